"""MLflow adapter, write side: the only module that logs runs and registers or aliases versions
(`models.registry` is the read side).

Runs, metrics and artifacts go to `sqlite:///<mlruns>/mlflow.db` with artifacts under
`<mlruns>/artifacts`. The win model is registered as `partnermatch-win`; its version carries the
whole model bundle (model, feature list, encoder name, partner snapshot) so that a service can
load `models:/partnermatch-win@champion` and nothing else. `partnermatch-sentiment` versions carry
a saved `models.sentiment` directory the same way (`register_directory` does both).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from features.sentiment_data import SENTIMENT_CLASSES
from models.bundle import ModelBundle
from models.registry import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION, Paths, RegisteredVersion, connect
from models.sentiment import SentimentModel
from training.config import EXPERIMENT

MODEL_ARTIFACT = "win_model"  # the pyfunc's name inside a run (historical: every model uses it)
SENTIMENT_TEXT = "text"  # the sentiment pyfunc's input column
# Explicit requirements: inferring them imports the world and is 3x slower.
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "numpy", "pandas", "pyarrow", "faiss-cpu", "onnxruntime", "tokenizers"]


def configure(paths: Paths) -> None:
    """Point MLflow at the project's SQLite store and artifact root; create the experiment once."""
    connect(paths)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=paths.artifact_root.as_uri())
    mlflow.set_experiment(EXPERIMENT)


def _flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(name, value))
        else:
            flat[name] = value
    return flat


class Run:
    """One MLflow run; thin wrappers that flatten nested dicts into `a_b_c` names."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        mlflow.log_params({key: str(value) for key, value in _flatten("", params).items()})

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        numeric = {key: float(value) for key, value in _flatten("", metrics).items() if isinstance(value, int | float)}
        mlflow.log_metrics({key: value for key, value in numeric.items() if value == value})  # drop NaN

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        mlflow.set_tags(dict(tags))


@contextmanager
def start_run(paths: Paths, run_name: str) -> Iterator[Run]:
    configure(paths)
    with mlflow.start_run(run_name=run_name) as active:
        yield Run(active.info.run_id)


class _BundlePyfunc(PythonModel):
    """pyfunc face of the bundle: predict(feature frame) -> calibrated win probability."""

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]), with_history=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.bundle.win_model.predict_win_probability(model_input)


def register_directory(
    run: Run,
    model_dir: Path,
    model_name: str,
    python_model: PythonModel,
    signature: ModelSignature,
    input_example: pd.DataFrame,
    tags: Mapping[str, str],
) -> RegisteredVersion:
    """Log `model_dir` as the `BUNDLE_ARTIFACT` of a pyfunc model in the active run and register a new
    version of `model_name` with `tags`; `models.registry.local_bundle` fetches the directory back.
    MLflow keeps the directory's own name, so it must be named `BUNDLE_ARTIFACT`."""
    if model_dir.name != BUNDLE_ARTIFACT:
        raise ValueError(f"a registered model directory must be named {BUNDLE_ARTIFACT!r}, got {model_dir.name!r}")
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=python_model,
        artifacts={BUNDLE_ARTIFACT: str(model_dir)},
        signature=signature,
        input_example=input_example,
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=model_name,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return RegisteredVersion(name=model_name, version=version, run_id=run.run_id, aliases=())


def register_bundle(
    run: Run, bundle_dir: Path, model_name: str, feature_names: tuple[str, ...], tags: Mapping[str, str]
) -> RegisteredVersion:
    """Log the bundle directory as a pyfunc model (input: a frame of `feature_names` floats; output:
    the win probability) and register a new version of `model_name`."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("float", name) for name in feature_names]),
        outputs=Schema([ColSpec("double", "win_probability")]),
    )
    # One placeholder row: shows callers the columns and dtype (its values mean nothing).
    example = pd.DataFrame([[0.5] * len(feature_names)], columns=list(feature_names), dtype="float32")
    return register_directory(run, bundle_dir, model_name, _BundlePyfunc(), signature, example, tags)


class _SentimentPyfunc(PythonModel):
    """pyfunc face of the sentiment model: a frame with a `text` column -> label, class probabilities
    and frustration per row. The encoder is rebuilt by name (its ONNX export under `.cache`)."""

    def load_context(self, context: Any) -> None:
        directory = Path(context.artifacts[BUNDLE_ARTIFACT])
        self.model = SentimentModel.from_directory(directory, Paths.from_environment().cache_dir)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        prediction = self.model.predict(model_input[SENTIMENT_TEXT].astype(str).tolist())
        frame = pd.DataFrame(prediction.probabilities, columns=[f"p_{name}" for name in SENTIMENT_CLASSES])
        return frame.assign(label=list(prediction.labels), frustration=prediction.frustration)


def register_sentiment_model(run: Run, model_dir: Path, model_name: str, tags: Mapping[str, str]) -> RegisteredVersion:
    """Log a saved `models.sentiment.SentimentModel` directory as a pyfunc model and register it."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", SENTIMENT_TEXT)]),
        outputs=Schema(
            [
                *[ColSpec("double", f"p_{name}") for name in SENTIMENT_CLASSES],
                ColSpec("string", "label"),
                ColSpec("double", "frustration"),
            ]
        ),
    )
    example = pd.DataFrame({SENTIMENT_TEXT: ["Thanks, the renewal went through smoothly."]})
    return register_directory(run, model_dir, model_name, _SentimentPyfunc(), signature, example, tags)


def set_alias(model_name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, version)


def mark_version(model_name: str, version: str, promoted: bool) -> str:
    """Move `champion` to the version when promoted, else make it the `challenger`; return the alias."""
    alias = CHAMPION if promoted else CHALLENGER
    set_alias(model_name, alias, version)
    return alias
