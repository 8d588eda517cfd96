"""MLflow adapter, write side: the only module that logs runs and registers or aliases versions
(`models.registry` is the read side).

Runs, metrics and artifacts go to `sqlite:///<mlruns>/mlflow.db` with artifacts under
`<mlruns>/artifacts`. The win model is registered as `partnermatch-win`; its version carries the
whole model bundle (model, feature list, encoder name, partner snapshot) so that a service can
load `models:/partnermatch-win@champion` and nothing else. Every write that fails raises
`models.registry.RegistryError` naming the store.
"""

from __future__ import annotations

import re
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
from mlflow.utils.logging_utils import suppress_logs

from models.bundle import ModelBundle
from models.registry import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION, Paths, RegisteredVersion, connect, store_errors
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

    def __init__(self, run_id: str, paths: Paths) -> None:
        self.run_id = run_id
        self.paths = paths

    def log_params(self, params: Mapping[str, Any]) -> None:
        with store_errors(self.paths, "write"):
            mlflow.log_params({key: str(value) for key, value in _flatten("", params).items()})

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        numeric = {key: float(value) for key, value in _flatten("", metrics).items() if isinstance(value, int | float)}
        with store_errors(self.paths, "write"):
            mlflow.log_metrics({key: value for key, value in numeric.items() if value == value})  # drop NaN

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        with store_errors(self.paths, "write"):
            mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        with store_errors(self.paths, "write"):
            mlflow.set_tags(dict(tags))


@contextmanager
def start_run(paths: Paths, run_name: str) -> Iterator[Run]:
    """An active run; ended FINISHED, or FAILED when the body raises."""
    with store_errors(paths, "write"):
        configure(paths)
        active = mlflow.start_run(run_name=run_name)
    status = "FAILED"
    try:
        yield Run(active.info.run_id, paths)
        status = "FINISHED"
    finally:
        with store_errors(paths, "write"):
            mlflow.end_run(status)


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
    `feature_names` floats; output: the win probability) and register a new version of `model_name`,
    tagged with `tags`."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("float", name) for name in feature_names]),
        outputs=Schema([ColSpec("double", "win_probability")]),
    )
    # MLflow warns that `python_model` is cloudpickled: ours is a stateless adapter (its state is the
    # bundle artifact, a format without pickles), and the service reads the bundle, never this pickle.
    quiet_pickle_notice = suppress_logs("mlflow.pyfunc", re.compile(r"^Passing a Python object as `python_model`"))
    with store_errors(run.paths, "write"), quiet_pickle_notice:
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
    return RegisteredVersion(name=model_name, version=version, run_id=run.run_id, aliases=(), tags=dict(tags))


def mark_version(paths: Paths, model_name: str, version: str, promoted: bool) -> str:
    """Move `champion` to the version when promoted, else make it the `challenger`; return the alias."""
    alias = CHAMPION if promoted else CHALLENGER
    with store_errors(paths, "write"):
        MlflowClient().set_registered_model_alias(model_name, alias, version)
    return alias
