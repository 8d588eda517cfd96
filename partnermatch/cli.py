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
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from features.progress import Progress
from partnermatch.progress import show_progress

if TYPE_CHECKING:
    from features.synthetic import EcosystemConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
# MLflow's INFO lines narrate its internals ("Creating initial MLflow database tables...", "Validating
# input example ..."); its warnings still show. Read when mlflow is imported; MLFLOW_LOGGING_LEVEL=INFO wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

app = typer.Typer(help="PartnerMatch: partner matching and predictive lead routing.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Honest evaluations on real public data sets.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that write JSON.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare data files.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys of the routing service (stored hashed beside the decision log).", no_args_is_help=True
)
db_app = typer.Typer(
    help="The service's database (PARTNERMATCH_DATABASE_URL: SQLite file or PostgreSQL).", no_args_is_help=True
)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
aliases_app = typer.Typer(help="Registry aliases (champion, challenger) and their history.", no_args_is_help=True)
app.add_typer(aliases_app, name="aliases")
# soft_wrap: long lines are not cut at 80 columns when stderr is a file or a pipe (a terminal wraps them itself).
console = Console(stderr=True, soft_wrap=True)


JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn errors a user can fix into exit code 2 with a one-line message."""
    from features.io import DataError
    from features.pairs import FeatureError
    from models.registry import RegistryError

    try:
        yield
    except (DataError, FeatureError, RegistryError, ValueError, FileNotFoundError) as error:
        # One line whatever the terminal width (a long store path stays whole); brackets in it are text.
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2) from error


def _resized(ecosystem: EcosystemConfig, partners: int | None, deals: int | None) -> EcosystemConfig:
    """A config's demo ecosystem with the sizes given on the command line (None: keep the default)."""
    from dataclasses import replace

    return replace(ecosystem, partners=partners or ecosystem.partners, deals=deals or ecosystem.deals)


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

    with _user_errors(), show_progress(console) as progress:
        config = EcosystemConfig(partners=partners, deals=deals, seed=seed)
        summary = generate_to_directory(config, out, progress)
    _emit(summary, None)


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="Ecosystem directory (`generate`, or CSV/Parquet exports); default: the demo.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the defaults.")] = None,
    partners: Annotated[int | None, typer.Option(help="Demo ecosystem size (partners).")] = None,
    deals: Annotated[int | None, typer.Option(help="Demo ecosystem size (deals).")] = None,
    encoder: Annotated[str | None, typer.Option(help="hashing-<d> | minilm | minilm-onnx | minilm-onnx-int8")] = None,
    dask_scheduler: Annotated[
        str | None, typer.Option(help="Fit the win model's LightGBM on this Dask scheduler (tcp://host:8786).")
    ] = None,
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
    with _user_errors(), show_progress(console) as progress:
        train_config = load_train_config(config, overrides)
        report = train_from_options(train_config, Paths.from_environment(), data, progress, dask_scheduler)
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
    with _user_errors(), show_progress(console) as progress:
        cache_dir = Paths.from_environment().cache_dir
        results = run(train, test, corpus_format, cache_dir, config, progress, test_format)
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

    with _user_errors(), show_progress(console) as progress:
        report = run(phrasebank, goemotions, Paths.from_environment(), progress=progress)
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

    with _user_errors(), show_progress(console) as progress:
        results = bench_training(EcosystemConfig(partners=partners, deals=deals, seed=seed), WinModelConfig(), progress)
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

    with _user_errors(), show_progress(console) as progress:
        results = bench_generation(EcosystemConfig(partners=partners, deals=deals, seed=seed), progress)
    _emit(results, json_path)


@bench_app.command("sentiment")
def bench_sentiment(
    texts: Annotated[Path, typer.Option(help="Labelled texts to score (their labels are not used).")],
    corpus_format: Annotated[str, typer.Option("--format", help="phrasebank | goemotions | csv")] = "goemotions",
    limit: Annotated[int, typer.Option(min=32, help="Score at most this many texts.")] = 2000,
    http: Annotated[bool, typer.Option(help="Also POST /sentiment over real HTTP (needs a win champion).")] = False,
    json_path: JsonOption = None,
) -> None:
    """Texts per second of the sentiment champion at batch 32, in process, with the uncached serving encoder."""
    import tempfile

    from models.registry import Paths
    from partnermatch.bench.sentiment import bench_sentiment as run
    from partnermatch.bench.sentiment import bench_sentiment_http

    with _user_errors(), show_progress(console) as progress:
        paths = Paths.from_environment()
        results = run(texts, corpus_format, limit, paths, progress)
        if http:
            with tempfile.TemporaryDirectory(prefix="bench-sentiment-") as scratch:
                results["http"] = bench_sentiment_http(texts, corpus_format, limit, paths, Path(scratch), progress)
    _emit(results, json_path)


@bench_app.command("embed")
def bench_embed(
    texts: Annotated[Path, typer.Option(help="Real texts to embed (a labelled corpus; labels unused).")],
    corpus_format: Annotated[str, typer.Option("--format", help="phrasebank | goemotions | csv")] = "goemotions",
    limit: Annotated[int, typer.Option(min=8, help="Embed at most this many texts.")] = 2000,
    one_at_a_time: Annotated[int, typer.Option(min=1, help="Of those, texts the old path embeds.")] = 500,
    torch_reference: Annotated[bool, typer.Option(help="Also report cosine to torch fp32 MiniLM.")] = True,
    json_path: JsonOption = None,
) -> None:
    """Bulk embedding (training) vs the old one-text-per-call path: texts/s and their ratio, serving one-text
    latency before/after, and the largest cosine deviation between bulk and serving vectors."""
    from models.registry import Paths
    from partnermatch.bench.embed import EmbedBenchSettings
    from partnermatch.bench.embed import bench_embed as run

    settings = EmbedBenchSettings(limit=limit, one_at_a_time_texts=one_at_a_time, torch_reference=torch_reference)
    with _user_errors(), show_progress(console) as progress:
        results = run(texts, corpus_format, Paths.from_environment().cache_dir, settings, progress)
    _emit(results, json_path)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="IP address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Server processes; they share the model's arrays.")] = 1,
) -> None:
    """Serve the champion over HTTP (training a first one on the demo ecosystem if none is registered).

    Swagger UI at /docs; POST /route, GET /decisions/{id}, /healthz, /readyz, /metrics.
    """
    import sys

    from models.registry import Paths
    from serving.service import SERVE_ENVIRONMENT, serve_command, workers_environment
    from training.config import load_train_config
    from training.workflows import ensure_champion

    with _user_errors(), show_progress(console) as progress:
        version = ensure_champion(load_train_config(), Paths.from_environment(), progress)
    db_upgrade()
    _announce_local_key(f"http://{host}:{port}")
    console.print(f"serving partnermatch-win v{version} on http://{host}:{port} (Swagger UI at /docs)")
    sys.stdout.flush()
    # Replace this process: Ctrl-C and signals from a supervisor reach bentoml directly.
    command = serve_command(host, port)
    # An explicit OMP_NUM_THREADS wins; --workers wins over an inherited BentoML override.
    os.execve(command[0], command, SERVE_ENVIRONMENT | os.environ | workers_environment(workers))


def _announce_local_key(url: str) -> None:
    """Create the local admin key on first start (see `serving.keys.ensure_local_key`) and say how to use it."""
    from models.registry import Paths
    from serving.keys import ensure_local_key
    from serving.service import local_key_path, open_key_store

    paths = Paths.from_environment()
    store = open_key_store(paths)
    try:
        local = ensure_local_key(store, local_key_path(paths))
    finally:
        store.close()
    if local is None:
        console.print("API keys: `partnermatch keys create --name NAME --scopes route,read_decisions`")
        return
    if local.created:
        console.print(
            f"created a local admin API key (every scope); its token is in {local.path} (mode 0600)", soft_wrap=True
        )
    console.print(
        f'try: curl -H "Authorization: Bearer $(cat {local.path})" {url}/decisions/<decision_id>', soft_wrap=True
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema (idempotent); imports old `api-keys.sqlite`, `feedback.sqlite` once."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from models.registry import Paths
    from serving.service import prepare_database
    from serving.stores import schema_revision

    with _user_errors():
        try:
            url = prepare_database(Paths.from_environment())
        except OperationalError as error:  # unreachable server, wrong password, locked file
            raise ValueError(f"the database could not be migrated: {error.orig}") from error
    shown = make_url(url).render_as_string(hide_password=True)  # never print a password
    console.print(f"database {shown} is at schema revision {schema_revision(url)}", soft_wrap=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. `crm-prod`.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated scopes: route, read_decisions, admin (every scope).")],
    rate: Annotated[float, typer.Option(help="Sustained requests per second (per worker).")] = 50.0,
    burst: Annotated[int, typer.Option(help="Requests allowed at once above the rate.")] = 100,
) -> None:
    """Create an API key; prints its token (on stdout) once: it is stored only as a hash."""
    from serving.keys import parse_scopes
    from serving.ratelimit import RateLimit
    from serving.service import open_key_store

    with _user_errors():
        store = open_key_store()
        try:
            issued = store.create(name, parse_scopes(scopes), RateLimit(rate, burst))
        finally:
            store.close()
    console.print(f"created API key {issued.key.key_id} ({issued.key.name}); the token is shown only this once:")
    typer.echo(issued.token)


@keys_app.command("list")
def keys_list() -> None:
    """Every API key (never a token) as JSON, revoked ones included."""
    from serving.service import open_key_store

    store = open_key_store()
    try:
        keys = [key.as_json() for key in store.all_keys()]
    finally:
        store.close()
    _emit({"keys": keys}, None)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (`keys list`).")]) -> None:
    """Revoke an API key: the service refuses it within a second."""
    from serving.service import open_key_store

    with _user_errors():
        store = open_key_store()
        try:
            key = store.revoke(key_id)
        finally:
            store.close()
    console.print(f"revoked API key {key.key_id} ({key.name})")


@app.command()
def route(
    deal: Annotated[Path, typer.Option(help="JSON file: a deal, or a whole request {deal, options}.")],
    json_path: JsonOption = None,
) -> None:
    """Route one deal with the champion, as POST /route would, and print the JSON response."""
    from models.registry import Paths
    from serving.service import read_route_request, route_once

    with _user_errors(), show_progress(console) as progress:
        request = read_route_request(deal)
        response = route_once(request, Paths.from_environment(), progress)
    _emit(response.model_dump(mode="json"), json_path)


@app.command()
def drift(
    html_path: Annotated[Path, typer.Option("--html", help="Write the HTML report (table + bars) here.")],
    model: Annotated[str, typer.Option(help="The model whose champion is compared: win.")] = "win",
    limit: Annotated[int, typer.Option(min=1, help="Latest logged decisions compared.")] = 5000,
    json_path: JsonOption = None,
) -> None:
    """PSI per feature and of the win probability: the champion's training window vs recent decisions.

    Logged to MLflow (run `drift-win`, the HTML as an artifact) and on the model version (GET /models).
    """
    from models.drift import html_report
    from models.registry import Paths
    from serving.drift import champion_drift
    from training.tracking import log_drift

    if model != "win":
        raise typer.BadParameter(f"drift is computed for the win model only, not {model!r}", param_hint="--model")
    paths = Paths.from_environment()
    with _user_errors(), show_progress(console) as progress:
        version, report = champion_drift(paths, limit, progress)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html_report(report, f"Drift of {version.name} v{version.version}"))
        log_drift(paths, version.name, version.version, report.as_json(), html_path)
    summary = f"drift {report.status} (PSI max {report.psi_max:.3f})"
    console.print(f"{version.name} v{version.version}: {summary}; wrote {html_path}")
    _emit({"model": f"{version.name} v{version.version}", **report.as_json()}, json_path)


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
    with _user_errors(), show_progress(console) as progress:
        results = run(load_train_config(config, overrides), Paths.from_environment(), requests, progress)
    _emit(results, json_path)


@bench_app.command("load")
def bench_load(
    partners: Annotated[int, typer.Option(min=100, help="Partners in the benchmark ecosystem.")] = 20000,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests kept in flight.")] = 32,
    seconds: Annotated[float, typer.Option(min=1.0, help="Measured load per worker count.")] = 30.0,
    workers: Annotated[str, typer.Option(help="Worker counts to run, comma-separated, e.g. 1,2.")] = "1,2",
    deals: Annotated[int | None, typer.Option(help="Historical deals (default: 2 per partner).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the training defaults.")] = None,
    seed: int = 0,
    promote_during: Annotated[
        bool,
        typer.Option(
            help="Train a challenger, then move `champion` to it a third of the way into each run and reload "
            "(1 worker: POST /admin/reload; more: each worker's poll): failed requests and versions served."
        ),
    ] = False,
    reload_poll_seconds: Annotated[
        float, typer.Option(min=0.1, help="The workers' alias poll with --promote-during and several workers.")
    ] = 1.0,
    json_path: JsonOption = None,
) -> None:
    """Sustained load on the real service: requests/s, errors, latency, /healthz while loaded, peak memory."""
    from models.registry import Paths
    from partnermatch.bench.load import LoadSettings
    from partnermatch.bench.load import bench_load as run
    from training.config import load_train_config

    try:
        worker_counts = tuple(int(count) for count in workers.split(","))
    except ValueError:
        worker_counts = ()
    if not worker_counts or min(worker_counts) < 1:
        raise typer.BadParameter(
            f"expected positive integers separated by commas, got {workers!r}", param_hint="--workers"
        )
    settings = LoadSettings(
        concurrency=concurrency,
        seconds=seconds,
        workers=worker_counts,
        promote_during=promote_during,
        reload_poll_seconds=reload_poll_seconds,
    )
    overrides: dict[str, Any] = {"ecosystem": {"partners": partners, "deals": deals or 2 * partners, "seed": seed}}
    with _user_errors(), show_progress(console) as progress:
        results = run(load_train_config(config, overrides), Paths.from_environment(), settings, progress)
    _emit(results, json_path)


@bench_app.command("feedback")
def bench_feedback(
    partners: Annotated[int, typer.Option(min=100, help="Partners in the benchmark ecosystem.")] = 20000,
    events: Annotated[int, typer.Option(min=1, help="Feedback events posted by the concurrent clients.")] = 2000,
    decisions: Annotated[int, typer.Option(min=0, help="Deals routed first; each gets one outcome event.")] = 400,
    concurrency: Annotated[int, typer.Option(min=1, help="Clients posting feedback at once.")] = 8,
    samples: Annotated[int, typer.Option(min=1, help="Routes timed right after a partner's feedback.")] = 200,
    workers: Annotated[int, typer.Option(min=1, help="Service worker processes.")] = 2,
    database_url: Annotated[
        str | None, typer.Option(help="An empty database for the service (default: a new SQLite file).")
    ] = None,
    deals: Annotated[int | None, typer.Option(help="Historical deals (default: 2 per partner).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the training defaults.")] = None,
    seed: int = 0,
    json_path: JsonOption = None,
) -> None:
    """Accepted feedback events/s (concurrent clients) and the p99 of a route right after its partner's feedback."""
    from models.registry import Paths
    from partnermatch.bench.feedback import FeedbackSettings
    from partnermatch.bench.feedback import bench_feedback as run
    from training.config import load_train_config

    overrides: dict[str, Any] = {"ecosystem": {"partners": partners, "deals": deals or 2 * partners, "seed": seed}}
    with _user_errors(), show_progress(console) as progress:
        settings = FeedbackSettings(events, decisions, concurrency, samples, workers)
        results = run(load_train_config(config, overrides), Paths.from_environment(), settings, database_url, progress)
    _emit(results, json_path)


@app.command("train-ipp")
def train_ipp(
    data: Annotated[
        Path | None, typer.Option(help="Ecosystem directory (`generate`, or CSV/Parquet exports); default: the demo.")
    ] = None,
    partners: Annotated[int | None, typer.Option(help="Demo ecosystem size (partners).")] = None,
    deals: Annotated[int | None, typer.Option(help="Demo ecosystem size (deals).")] = None,
    encoder: Annotated[str | None, typer.Option(help="hashing-<d> | minilm | minilm-onnx-int8")] = None,
    json_path: JsonOption = None,
) -> None:
    """Train the ideal-partner-profile model with its baselines, log to MLflow, register partnermatch-ipp."""
    from dataclasses import replace

    from models.registry import Paths
    from training.ipp import IppConfig, train_ipp_from_options

    with _user_errors(), show_progress(console) as progress:
        config = IppConfig()
        config = replace(
            config, ecosystem=_resized(config.ecosystem, partners, deals), encoder=encoder or config.encoder
        )
        report = train_ipp_from_options(config, Paths.from_environment(), data, progress)
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}")
    _emit(report.metrics, json_path)


@app.command()
def ipp(
    prospects: Annotated[Path, typer.Option(help="CSV or JSON of prospects (profile_text, products, ...).")],
    out: Annotated[Path, typer.Option(help="Scores: .json (full) or .csv (one row per prospect).")],
) -> None:
    """Score prospects with the partnermatch-ipp champion: fit, percentile, evidence, reasons, white space."""
    import pandas as pd

    from features.embed import make_encoder
    from features.prospects import read_prospects
    from models.ipp import load_champion, score_in_batches, scores_frame, scores_records
    from models.registry import Paths

    with _user_errors(), show_progress(console) as progress:
        if out.suffix.lower() not in (".json", ".csv"):
            raise ValueError(f"--out {out}: expected a .json or .csv file")
        records = read_prospects(prospects)
        paths = Paths.from_environment()
        model, version = load_champion(paths)
        progress.step(f"scoring {len(records)} prospects with {version.name} v{version.version}")
        scores = score_in_batches(model, records, make_encoder(model.encoder, paths.cache_dir), progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame: pd.DataFrame = scores_frame(scores).assign(model=version.name, model_version=version.version)
        frame.to_csv(out, index=False)
    else:
        payload = {"model": version.name, "model_version": version.version, "encoder": model.encoder}
        out.write_text(json.dumps(payload | {"prospects": scores_records(scores)}, indent=2) + "\n")
    console.print(f"wrote {len(scores)} scores to {out}")


@evaluate_app.command("lookalike")
def evaluate_lookalike(
    data: Annotated[Path, typer.Option(help="CSV with entity_id, text, date, chosen_by.")],
    cutoff: Annotated[
        str, typer.Option(help="Profiles from rows before this date; entities on or after it are ranked.")
    ],
    encoder: Annotated[
        str, typer.Option(help="hashing-<d> | minilm | minilm-onnx-int8-static | minilm-onnx-int8")
    ] = "minilm-onnx-int8",
    json_path: JsonOption = None,
) -> None:
    """Fit ranking on real data: top-1, top-5 and MRR of the model vs popularity and TF-IDF centroid."""
    from models.registry import Paths
    from training.lookalike import LookalikeConfig
    from training.lookalike import evaluate_lookalike as run

    with _user_errors(), show_progress(console) as progress:
        results = run(data, cutoff, LookalikeConfig(encoder=encoder), Paths.from_environment().cache_dir, progress)
    _emit(results, json_path)


@data_app.command("yc-lookalike")
def yc_lookalike(
    source: Annotated[Path, typer.Option(help="YC Startups.csv")],
    out: Annotated[Path, typer.Option(help="Lookalike CSV to write")],
    cutoff: Annotated[str, typer.Option(help="Investors need enough portfolio before this date")] = "2012-01-01",
    min_portfolio: Annotated[int, typer.Option(min=1, help="Companies an investor backed before the cutoff")] = 3,
) -> None:
    """Convert the YC startups file into a lookalike CSV (company, text, batch year, investor)."""
    from features.lookalike import yc_lookalike as run

    with _user_errors():
        rows = run(source, out, cutoff=cutoff, min_portfolio=min_portfolio)
    console.print(f"wrote {out}: {len(rows)} rows, {rows['entity_id'].nunique()} companies")


@bench_app.command("ipp")
def bench_ipp(
    partners: Annotated[int, typer.Option(min=100, help="Partners in the benchmark ecosystem.")] = 4000,
    deals: Annotated[int | None, typer.Option(help="Historical deals (default: 10 per partner).")] = None,
    singles: Annotated[int, typer.Option(min=1, help="Prospects scored one at a time.")] = 500,
    encoder: Annotated[
        str, typer.Option(help="hashing-<d> | minilm | minilm-onnx-int8-static | minilm-onnx-int8")
    ] = "minilm-onnx-int8",
    http: Annotated[bool, typer.Option(help="Also over HTTP against the real service (POST /ipp_fit).")] = True,
    json_path: JsonOption = None,
) -> None:
    """IPP scoring speed: prospects per second in batch, p50/p99 ms per single prospect, in process and over HTTP."""
    from features.synthetic import EcosystemConfig
    from models.registry import Paths
    from partnermatch.bench.ipp import bench_ipp as run
    from training.ipp import IppConfig

    config = IppConfig(ecosystem=EcosystemConfig(partners=partners, deals=deals or 10 * partners), encoder=encoder)
    with _user_errors(), show_progress(console) as progress:
        results = run(config, Paths.from_environment(), singles, progress, http=http)
    _emit(results, json_path)


def _team_report(
    partners: int, deals: int, team_deals: int, evaluation_deals: int, progress: Progress
) -> dict[str, Any]:
    from features.synthetic import EcosystemConfig, generate_ecosystem
    from models.registry import Paths
    from training.config import TeamConfig
    from training.team import run_team_training

    config = TeamConfig(
        ecosystem=EcosystemConfig(partners=partners, deals=deals, team_deals=team_deals),
        evaluation_deals=evaluation_deals,
    )
    ecosystem, truth = generate_ecosystem(config.ecosystem, progress)
    report = run_team_training(config, Paths.from_environment(), ecosystem, truth, progress)
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}: {report.decision}")
    return report.metrics


TeamSize = Annotated[int, typer.Option(min=2, help="Synthetic ecosystem: partners.")]


@app.command("train-team")
def train_team(
    partners: TeamSize = 1000,
    deals: Annotated[int, typer.Option(min=10, help="Regular deals.")] = 10000,
    team_deals: Annotated[int, typer.Option(min=10, help="Team deals (2-7 requirements each).")] = 3000,
    evaluation_deals: Annotated[int, typer.Option(min=1, help="Held-out team deals to assemble.")] = 200,
    json_path: JsonOption = None,
) -> None:
    """Train the team model (`partnermatch-team`) with its baselines and evaluations, register it."""
    with _user_errors(), show_progress(console) as progress:
        metrics = _team_report(partners, deals, team_deals, evaluation_deals, progress)
    _emit(metrics, json_path)


# One flow trains, evaluates and registers the team model: `evaluate teams` is the same command.
evaluate_app.command(
    "teams",
    help="Teams vs best-single and random teams under the latent truth; optimiser vs exact; global vs greedy.",
)(train_team)


@bench_app.command("team")
def bench_team(
    partners: Annotated[int, typer.Option(min=50, help="Partners the candidates are drawn from.")] = 100000,
    instances: Annotated[int, typer.Option(min=1, help="Team problems to time.")] = 50,
    http: Annotated[
        bool, typer.Option("--http", help="POST /team over HTTP against the real service (trains a team model).")
    ] = False,
    json_path: JsonOption = None,
) -> None:
    """Optimiser p50/p99 on 7 requirements x 50 candidates, against exhaustive search; with --http,
    POST /team p50/p99 against the exact solver on the same instances and the server's peak RSS."""
    from partnermatch.bench.team import bench_team as run_bench

    with _user_errors(), show_progress(console) as progress:
        if http:
            from models.registry import Paths
            from partnermatch.bench.team_http import bench_team_http

            results = bench_team_http(partners, instances, Paths.from_environment(), progress)
        else:
            results = run_bench(partners, instances, progress=progress)
    _emit(results, json_path)


@app.command()
def retrain(
    model: Annotated[str, typer.Option(help="The model to retrain (only `win` learns from feedback).")] = "win",
    data: Annotated[
        Path | None, typer.Option(help="History directory (CSV/Parquet); default: the champion bundle's history.")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Log-loss improvement (nats) the interval's lower end must exceed.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the training defaults.")] = None,
    json_path: JsonOption = None,
) -> None:
    """Retrain on history + feedback; promote only when the improvement's bootstrap interval clears the margin."""
    from models.registry import Paths
    from partnermatch.retrain import retrain_with_feedback
    from training.config import RetrainConfig, load_train_config

    if model != "win":
        raise typer.BadParameter(f"only `win` learns from feedback, got {model!r}", param_hint="--model")
    with _user_errors(), show_progress(console) as progress:
        defaults = RetrainConfig(train=load_train_config(config))
        retrain_config = defaults if margin is None else RetrainConfig(train=defaults.train, margin=margin)
        report = retrain_with_feedback(retrain_config, Paths.from_environment(), data, progress)
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}: {report.decision}")
    comparison = report.comparison.as_metrics() if report.comparison is not None else None
    _emit(
        {
            "version": report.version.version,
            "alias": report.alias,
            "promoted": report.promoted,
            "champion_before": report.champion_before,
            "decision": report.decision,
            "feedback_sequence": report.feedback_sequence,
            "comparison": comparison,
            "metrics": report.metrics,
        },
        json_path,
    )


@aliases_app.command("history")
def aliases_history(
    model: Annotated[
        str | None, typer.Option(help="A model (`win`, `team`, ... or `partnermatch-win`); default: every model.")
    ] = None,
    json_path: JsonOption = None,
) -> None:
    """Every alias move, oldest first: when, model, alias, version (and the one before), who, why."""
    from models.registry import Paths
    from training.tracking import alias_history

    name = None if model is None else model if model.startswith("partnermatch-") else f"partnermatch-{model}"
    with _user_errors():
        changes = alias_history(Paths.from_environment(), name)
    for change in changes:
        before = f" (was v{change.previous_version})" if change.previous_version else ""
        typer.echo(
            f"{change.changed_at.isoformat(timespec='seconds')}  {change.model_name} @{change.alias} -> "
            f"v{change.version}{before}  by {change.changed_by}: {change.reason}"
        )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"changes": [change.as_json() for change in changes]}, indent=2) + "\n")
        console.print(f"wrote {json_path}")


@app.command()
def simulate(
    months: Annotated[int, typer.Option(min=1, help="Months of deals to route after the history window.")] = 12,
    config: Annotated[Path | None, typer.Option(help="TOML file overriding the training defaults.")] = None,
    partners: Annotated[int | None, typer.Option(help="Demo ecosystem size (partners).")] = None,
    deals: Annotated[int | None, typer.Option(help="Demo ecosystem history size (deals).")] = None,
    encoder: Annotated[str | None, typer.Option(help="hashing-<d> | minilm | minilm-onnx | minilm-onnx-int8")] = None,
    margin: Annotated[
        float | None, typer.Option(help="Log-loss improvement (nats) a monthly challenger must clear.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the outcome draws.")] = 0,
    json_path: JsonOption = None,
) -> None:
    """Route a year of synthetic deals day by day: frozen, live and retrained models vs round robin and the oracle."""
    from models.registry import Paths
    from partnermatch.simulation import LIVE_RETRAIN, ROUND_ROBIN, SimulationConfig, summary
    from partnermatch.simulation import simulate as run
    from training.config import RetrainConfig, load_train_config

    overrides: dict[str, Any] = {"encoder": encoder} if encoder else {}
    ecosystem_overrides = {k: v for k, v in {"partners": partners, "deals": deals}.items() if v is not None}
    if ecosystem_overrides:
        overrides["ecosystem"] = ecosystem_overrides
    with _user_errors(), show_progress(console) as progress:
        train_config = load_train_config(config, overrides)
        retrain_config = RetrainConfig(train=train_config, margin=0.0 if margin is None else margin)
        simulation = SimulationConfig(history=train_config.ecosystem, months=months, retrain=retrain_config, seed=seed)
        results = summary(run(simulation, Paths.from_environment().cache_dir, progress), simulation)
    headline = results["lift"][f"{LIVE_RETRAIN}_vs_{ROUND_ROBIN}"]
    won, revenue = headline["won_deals"], headline["revenue"]
    console.print(
        f"live features + monthly retrains vs round robin: won deals {won['relative']:+.1%} "
        f"[{won['relative_ci_low']:+.1%}, {won['relative_ci_high']:+.1%}], revenue {revenue['relative']:+.1%} "
        f"[{revenue['relative_ci_low']:+.1%}, {revenue['relative_ci_high']:+.1%}]"
    )
    _emit(results, json_path)


@app.command("shadow-report")
def shadow_report(json_path: JsonOption = None) -> None:
    """Champion vs shadow (PARTNERMATCH_SHADOW) from the decision log: top-k agreement, expected wins, calibration."""
    from models.registry import Paths
    from partnermatch.shadow_report import shadow_report_from_log

    with _user_errors():
        report = shadow_report_from_log(Paths.from_environment())
    _emit(report, json_path)


@app.command()
def team(
    deal: Annotated[Path, typer.Option(help="JSON file: a deal, or a whole request {deal, options} of POST /team.")],
    json_path: JsonOption = None,
) -> None:
    """Assemble partner teams for a multi-product deal with the team model, as POST /team would."""
    from models.registry import Paths
    from serving.service import load_team_assembler, read_team_request
    from serving.team import assemble

    with _user_errors(), show_progress(console) as progress:
        request = read_team_request(deal)
        assembler = load_team_assembler(Paths.from_environment(), progress)
        progress.step(f"assembling teams for {len(request.deal.products)} requirements")
        response = assemble(assembler, request)
    _emit(response.model_dump(mode="json"), json_path)


@app.command("route-batch")
def route_batch(
    deals: Annotated[Path, typer.Option(help="JSON file: the body of POST /route/batch {deals, options}.")],
    out: Annotated[Path, typer.Option(help="Where to write the JSON response.")],
) -> None:
    """Route many deals at once under partner capacities (global plan vs greedy), as POST /route/batch would."""
    from models.registry import Paths
    from serving.batch import route_batch as run
    from serving.service import load_router, read_batch_request

    with _user_errors(), show_progress(console) as progress:
        request = read_batch_request(deals)
        router = load_router(Paths.from_environment(), progress)
        progress.step(f"routing {len(request.deals)} deals")
        response = run(router, request, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(response.model_dump_json(indent=2) + "\n")
    plan, greedy = response.global_plan, response.greedy
    console.print(
        f"wrote {out}: expected wins {plan.expected_wins:.2f} global vs {greedy.expected_wins:.2f} greedy "
        f"({response.lift:+.1%}), {plan.assigned}/{len(response.assignments)} deals assigned"
    )


@app.command("train-health")
def train_health(
    data: Annotated[
        Path | None, typer.Option(help="Generated ecosystem directory (with truth); default: the demo.")
    ] = None,
    partners: Annotated[int | None, typer.Option(help="Demo ecosystem size (partners).")] = None,
    deals: Annotated[int | None, typer.Option(help="Demo ecosystem size (deals).")] = None,
    json_path: JsonOption = None,
) -> None:
    """Fit the disengagement model and health score beside the engagement-decline rule; register partnermatch-health."""
    from dataclasses import replace

    from models.registry import Paths
    from training.config import HealthConfig
    from training.health import train_health as run

    with _user_errors(), show_progress(console) as progress:
        config = HealthConfig()
        config = replace(config, ecosystem=_resized(config.ecosystem, partners, deals))
        report = run(config, Paths.from_environment(), data, progress)
    console.print(f"registered {report.version.name} v{report.version.version} as {report.alias}")
    _emit(report.metrics, json_path)


@app.command()
def health(out: Annotated[Path, typer.Option(help="JSON file: health of every partner.")]) -> None:
    """Health score, band, disengagement probability, reasons and trends of every partner (champion's snapshot)."""
    from dataclasses import asdict

    from models.health import assess_all, load_champion
    from models.registry import Paths

    with _user_errors(), show_progress(console) as progress:
        model, version = load_champion(Paths.from_environment())
        progress.step(f"assessing {len(model.snapshot):,} partners with {version.name} v{version.version}")
        assessed = assess_all(model, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": version.name, "model_version": version.version, "partners": [asdict(row) for row in assessed]}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote the health of {len(assessed)} partners to {out}")
