"""MLflow adapter, write side: the only module that logs runs and registers or aliases versions
(`models.registry` is the read side).

Runs, metrics and artifacts go to `sqlite:///<mlruns>/mlflow.db` with artifacts under
`<mlruns>/artifacts`. The win model is registered as `partnermatch-win`; its version carries the
whole model bundle (model, feature list, encoder name, partner snapshot) so that a service can
load `models:/partnermatch-win@champion` and nothing else.
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

from models.bundle import ModelBundle
from models.registry import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION, Paths, RegisteredVersion, connect
from training.config import EXPERIMENT

MODEL_ARTIFACT = "win_model"
# Explicit requirements: inferring them imports the world and is 3x slower.
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "numpy", "pandas", "pyarrow", "faiss-cpu"]


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


class _TeamPyfunc(PythonModel):
    """pyfunc face of a team bundle: predict(team feature frame) -> calibrated team win probability."""

    def load_context(self, context: Any) -> None:
        from models.team import load_team_model

        self.team_model = load_team_model(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.team_model.predict_win_probability(model_input)


PYFUNCS: dict[str, type[PythonModel]] = {"win": _BundlePyfunc, "team": _TeamPyfunc}


def register_bundle(
    run: Run,
    bundle_dir: Path,
    model_name: str,
    feature_names: tuple[str, ...],
    tags: Mapping[str, str],
    pyfunc: str = "win",
) -> RegisteredVersion:
    """Log the bundle directory as a pyfunc model (`PYFUNCS[pyfunc]`; input: a frame of
    `feature_names` floats; output: the win probability) and register a new version of `model_name`."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("float", name) for name in feature_names]),
        outputs=Schema([ColSpec("double", "win_probability")]),
    )
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=PYFUNCS[pyfunc](),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=signature,
        # One placeholder row: shows callers the columns and dtype (its values mean nothing).
        input_example=pd.DataFrame([[0.5] * len(feature_names)], columns=list(feature_names), dtype="float32"),
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=model_name,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return RegisteredVersion(name=model_name, version=version, run_id=run.run_id, aliases=())


def set_alias(model_name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(model_name, alias, version)


def mark_version(model_name: str, version: str, promoted: bool) -> str:
    """Move `champion` to the version when promoted, else make it the `challenger`; return the alias."""
    alias = CHAMPION if promoted else CHALLENGER
    set_alias(model_name, alias, version)
    return alias
