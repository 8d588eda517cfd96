"""`partnermatch`: thin typer commands over plain functions (tests call those functions directly).

Errors a user can fix (bad file, unknown column, bad option) exit with code 2 and one line saying
what and where; no stack traces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.status import Status

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

app = typer.Typer(help="PartnerMatch: partner matching and predictive lead routing.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Honest evaluations on real public data sets.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that write JSON.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare data files.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
console = Console(stderr=True)


class StatusProgress:
    """Shows each stage in a rich status line."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def step(self, message: str) -> None:
        self.status.update(message)

    def count(self, done: int, total: int) -> None:
        """Counts are not shown in a status line."""


JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn errors a user can fix into exit code 2 with a one-line message."""
    from features.io import DataError
    from features.pairs import FeatureError

    try:
        yield
    except (DataError, FeatureError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from error


def _emit(results: dict[str, Any], json_path: Path | None) -> None:
    text = json.dumps(results, indent=2, default=float)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
        console.print(f"wrote {json_path}")
    typer.echo(text)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory for the Parquet tables and the ground truth.")],
    partners: Annotated[int, typer.Option(min=2, help="Number of partners.")] = 2000,
    deals: Annotated[int, typer.Option(min=10, help="Number of historical deals.")] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate a synthetic partner ecosystem with known ground truth."""
    from features.synthetic import EcosystemConfig
    from training.workflows import generate_to_directory

    with _user_errors(), console.status("generating") as status:
        config = EcosystemConfig(partners=partners, deals=deals, seed=seed)
        summary = generate_to_directory(config, out, progress=StatusProgress(status))
    _emit(summary, None)


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Ecosystem directory (from `generate`); default: the demo.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the defaults.")] = None,
    partners: Annotated[int | None, typer.Option(help="Demo ecosystem size (partners).")] = None,
    deals: Annotated[int | None, typer.Option(help="Demo ecosystem size (deals).")] = None,
    encoder: Annotated[str | None, typer.Option(help="hashing-<d> | minilm | minilm-onnx-int8")] = None,
    json_path: JsonOption = None,
) -> None:
    """Train the win model with baselines, log to MLflow, register it, move `champion` if better."""
    from models.registry import Paths
    from training.config import load_train_config
    from training.workflows import train_from_options

    overrides: dict[str, Any] = {}
    if encoder:
        overrides["encoder"] = encoder
    ecosystem_overrides = {k: v for k, v in {"partners": partners, "deals": deals}.items() if v is not None}
    if ecosystem_overrides:
        overrides["ecosystem"] = ecosystem_overrides
    with _user_errors(), console.status("training") as status:
        train_config = load_train_config(config, overrides)
        report = train_from_options(train_config, Paths.from_environment(), data, StatusProgress(status))
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}: {report.decision}")
    _emit(report.metrics, json_path)


@evaluate_app.command("leads")
def evaluate_leads(
    train: Annotated[Path, typer.Option(help="X Education-format CSV to train on.")],
    test: Annotated[Path, typer.Option(help="X Education-format CSV to score.")],
    include_leaky: Annotated[bool, typer.Option(help="Also use the post-contact (leaky) columns.")] = False,
    json_path: JsonOption = None,
) -> None:
    """Lead scoring on X Education leads: our model beside logistic regression."""
    from training.lead_scoring import evaluate_leads as run

    with _user_errors():
        results = run(train, test, include_leaky=include_leaky)
    _emit(results, json_path)


@evaluate_app.command("olist")
def evaluate_olist(
    train_dir: Annotated[Path, typer.Option(help="Olist funnel directory to train on.")],
    test_dir: Annotated[Path, typer.Option(help="Olist funnel directory to score.")],
    json_path: JsonOption = None,
) -> None:
    """MQL -> won on the Olist marketing funnel: our model beside logistic regression."""
    from training.lead_scoring import evaluate_olist as run

    with _user_errors():
        results = run(train_dir, test_dir)
    _emit(results, json_path)


@evaluate_app.command("maven")
def evaluate_maven(
    data_dir: Annotated[Path, typer.Option(help="Maven CRM directory (sales_pipeline.csv, ...).")],
    include_leak: Annotated[bool, typer.Option(help="Add close_value as a feature (shows a leak).")] = False,
    json_path: JsonOption = None,
) -> None:
    """The win-model pipeline on the Maven CRM null-control: leak-free ROC-AUC must be about 0.5."""
    from training.workflows import evaluate_maven as run

    with _user_errors():
        results = run(data_dir, include_leak=include_leak)
    _emit(results, json_path)


@evaluate_app.command("sentiment")
def evaluate_sentiment(
    train: Annotated[Path, typer.Option(help="Labelled texts to train on.")],
    test: Annotated[Path, typer.Option(help="Labelled texts to score.")],
    corpus_format: Annotated[str, typer.Option("--format", help="phrasebank | goemotions | csv (text,label)")],
    test_format: Annotated[str | None, typer.Option(help="Format of --test when it differs (out of domain).")] = None,
    encoder: Annotated[str | None, typer.Option(help="hashing-<d> | minilm | minilm-onnx-int8")] = None,
    json_path: JsonOption = None,
) -> None:
    """Sentiment (and, on GoEmotions, frustration) of our model beside VADER: accuracy, macro-F1, F1 per class."""
    from models.registry import Paths
    from training.config import SentimentConfig
    from training.sentiment import evaluate_sentiment as run

    config = SentimentConfig() if encoder is None else SentimentConfig(encoder=encoder)
    with _user_errors(), console.status("evaluating sentiment") as status:
        cache_dir = Paths.from_environment().cache_dir
        results = run(train, test, corpus_format, cache_dir, config, StatusProgress(status), test_format)
    _emit(results, json_path)


@app.command("train-sentiment")
def train_sentiment(
    phrasebank: Annotated[Path, typer.Option(help="Financial PhraseBank Sentences_*Agree.txt file.")],
    goemotions: Annotated[Path, typer.Option(help="GoEmotions directory (train.tsv, dev.tsv, labels.txt, ...).")],
    json_path: JsonOption = None,
) -> None:
    """Train the sentiment model on both sets, compare with VADER, register partnermatch-sentiment."""
    from models.registry import Paths
    from training.sentiment import train_sentiment as run

    with _user_errors(), console.status("training the sentiment model") as status:
        report = run(phrasebank, goemotions, Paths.from_environment(), progress=StatusProgress(status))
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}: {report.decision}")
    _emit(report.metrics, json_path)


@data_app.command("split-phrasebank")
def split_phrasebank(
    source: Annotated[Path, typer.Option(help="Financial PhraseBank Sentences_*Agree.txt file")],
    out: Annotated[Path, typer.Option(help="Directory for train.txt and test.txt")],
    test_fraction: Annotated[float, typer.Option(min=0.05, max=0.95)] = 0.2,
) -> None:
    """Split a PhraseBank file by sentence text (the same side in every agreement file) into train/test."""
    from features.sentiment_data import split_phrasebank as run

    with _user_errors():
        train_path, test_path = run(source, out, test_fraction=test_fraction)
    console.print(f"wrote {train_path} and {test_path}")


@data_app.command("split-leads")
def split_leads(
    source: Annotated[Path, typer.Option(help="X Education Leads.csv")],
    out: Annotated[Path, typer.Option(help="Directory for train.csv and test.csv")],
    test_fraction: Annotated[float, typer.Option(min=0.05, max=0.95)] = 0.25,
) -> None:
    """Split X Education leads by Lead Number (its order of arrival) into train.csv / test.csv."""
    from features.public_data import split_xeducation

    with _user_errors():
        split_xeducation(source, out, test_fraction=test_fraction)
    console.print(f"wrote {out / 'train.csv'} and {out / 'test.csv'}")


@data_app.command("split-olist")
def split_olist(
    source: Annotated[Path, typer.Option(help="Olist marketing-funnel directory")],
    out: Annotated[Path, typer.Option(help="Directory for train/ and test/")],
    cutoff: Annotated[str, typer.Option(help="First-contact date that starts the test period")] = "2018-02-01",
) -> None:
    """Split the Olist funnel by first-contact date into train/ and test/ directories."""
    from features.public_data import split_olist as run

    with _user_errors():
        run(source, out, cutoff=cutoff)
    console.print(f"wrote {out / 'train'} and {out / 'test'}")


@bench_app.command("train")
def bench_train(
    partners: Annotated[int, typer.Option(min=2)] = 20000,
    deals: Annotated[int, typer.Option(min=10, help="Historical deals (x ~5 attempts = rows).")] = 200000,
    seed: int = 0,
    json_path: JsonOption = None,
) -> None:
    """Time feature building and fitting on ~1M rows; logistic regression fit time in the same run."""
    from features.synthetic import EcosystemConfig
    from partnermatch.bench.train import bench_training
    from training.config import WinModelConfig

    with _user_errors(), console.status("benchmarking training") as status:
        results = bench_training(
            EcosystemConfig(partners=partners, deals=deals, seed=seed), WinModelConfig(), StatusProgress(status)
        )
    _emit(results, json_path)


@bench_app.command("generate")
def bench_generate(
    partners: Annotated[int, typer.Option(min=2)] = 100000,
    deals: Annotated[int, typer.Option(min=10)] = 200000,
    seed: int = 0,
    json_path: JsonOption = None,
) -> None:
    """Time and peak memory of generating an ecosystem (target: 100k partners, 1M rows)."""
    from features.synthetic import EcosystemConfig
    from partnermatch.bench.train import bench_generation

    with _user_errors(), console.status("benchmarking generation") as status:
        results = bench_generation(EcosystemConfig(partners=partners, deals=deals, seed=seed), StatusProgress(status))
    _emit(results, json_path)


@bench_app.command("sentiment")
def bench_sentiment(
    texts: Annotated[Path, typer.Option(help="Labelled texts to score (their labels are not used).")],
    corpus_format: Annotated[str, typer.Option("--format", help="phrasebank | goemotions | csv")] = "goemotions",
    limit: Annotated[int, typer.Option(min=32, help="Score at most this many texts.")] = 2000,
    json_path: JsonOption = None,
) -> None:
    """Texts per second of the sentiment champion at batch 32, in process, with the uncached serving encoder."""
    from models.registry import Paths
    from partnermatch.bench.sentiment import bench_sentiment as run

    with _user_errors(), console.status("benchmarking the sentiment model") as status:
        results = run(texts, corpus_format, limit, Paths.from_environment(), StatusProgress(status))
    _emit(results, json_path)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="IP address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
) -> None:
    """Serve the champion over HTTP (training a first one on the demo ecosystem if none is registered).

    Swagger UI at /docs; POST /route, GET /decisions/{id}, /healthz, /readyz, /metrics.
    """
    import sys

    from models.registry import Paths
    from serving.service import SERVE_ENVIRONMENT, serve_command
    from training.config import load_train_config
    from training.workflows import ensure_champion

    with _user_errors(), console.status("checking the model registry") as status:
        version = ensure_champion(load_train_config(), Paths.from_environment(), StatusProgress(status))
    console.print(f"serving partnermatch-win v{version} on http://{host}:{port} (Swagger UI at /docs)")
    sys.stdout.flush()
    # Replace this process: Ctrl-C and signals from a supervisor reach bentoml directly.
    command = serve_command(host, port)
    os.execve(command[0], command, SERVE_ENVIRONMENT | os.environ)  # an explicit setting wins


@app.command()
def route(
    deal: Annotated[Path, typer.Option(help="JSON file: a deal, or a whole request {deal, options}.")],
    json_path: JsonOption = None,
) -> None:
    """Route one deal with the champion, as POST /route would, and print the JSON response."""
    from models.registry import Paths
    from serving.service import read_route_request, route_once

    with _user_errors(), console.status("routing") as status:
        request = read_route_request(deal)
        response = route_once(request, Paths.from_environment(), StatusProgress(status))
    _emit(response.model_dump(mode="json"), json_path)


@bench_app.command("route")
def bench_route(
    partners: Annotated[int, typer.Option(min=100, help="Partners in the benchmark ecosystem.")] = 100000,
    requests: Annotated[int, typer.Option(min=1, help="Deals sent to the service, one at a time.")] = 1000,
    deals: Annotated[int | None, typer.Option(help="Historical deals (default: 2 per partner).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the training defaults.")] = None,
    seed: int = 0,
    json_path: JsonOption = None,
) -> None:
    """Latency, throughput and memory of the real service vs exact brute-force scoring (recall at 10)."""
    from models.registry import Paths
    from partnermatch.bench.route import bench_route as run
    from training.config import load_train_config

    overrides: dict[str, Any] = {"ecosystem": {"partners": partners, "deals": deals or 2 * partners, "seed": seed}}
    with _user_errors(), console.status("benchmarking the routing service") as status:
        results = run(load_train_config(config, overrides), Paths.from_environment(), requests, StatusProgress(status))
    _emit(results, json_path)
