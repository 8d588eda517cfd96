"""MLflow adapter, write side: the only module that logs runs and registers or aliases versions
(`models.registry` is the read side).

Runs, metrics and artifacts go to `sqlite:///<mlruns>/mlflow.db` with artifacts under
`<mlruns>/artifacts`. The win model is registered as `partnermatch-win`; its version carries the
whole model bundle (model, feature list, encoder name, partner snapshot) so that a service can
load `models:/partnermatch-win@champion` and nothing else. Other models' versions (team, sentiment)
carry their saved directory the same way (`register_directory` does every one). Every write that
fails raises `models.registry.RegistryError` naming the store.
"""

from __future__ import annotations

import getpass
import json
import math
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from mlflow.utils.logging_utils import suppress_logs

from features.sentiment_data import SENTIMENT_CLASSES
from models.bundle import ModelBundle
from models.drift import DRIFT_PSI_MAX_TAG, DRIFT_STATUS_TAG
from models.registry import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION, Paths, RegisteredVersion, connect, store_errors
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
    # MLflow warns that `python_model` is cloudpickled: ours are stateless adapters (their state is the
    # artifact directory, a format without pickles), and the services read that directory, never this pickle.
    quiet_pickle_notice = suppress_logs("mlflow.pyfunc", re.compile(r"^Passing a Python object as `python_model`"))
    with store_errors(run.paths, "write"), quiet_pickle_notice:
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
    return RegisteredVersion(name=model_name, version=version, run_id=run.run_id, aliases=(), tags=dict(tags))


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
    # One placeholder row: shows callers the columns and dtype (its values mean nothing).
    example = pd.DataFrame([[0.5] * len(feature_names)], columns=list(feature_names), dtype="float32")
    return register_directory(run, bundle_dir, model_name, PYFUNCS[pyfunc](), signature, example, tags)


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


ALIAS_HISTORY_FILE = "alias_history.sqlite"  # under the mlruns dir: every alias change, one row each
_ALIAS_METADATA = sa.MetaData()
ALIAS_HISTORY = sa.Table(
    "alias_history",
    _ALIAS_METADATA,
    sa.Column("change_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("changed_at", sa.String(40), nullable=False),  # UTC ISO 8601, fixed width: text order is time order
    sa.Column("model_name", sa.String(128), nullable=False, index=True),
    sa.Column("alias", sa.String(32), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("previous_version", sa.String(32)),  # the version the alias named before; NULL: none
    sa.Column("changed_by", sa.String(256), nullable=False),  # user@host
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),  # flat name -> number
    sa.Column("run_id", sa.String(64), nullable=False),  # the run that registered the version
)


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias: who moved `alias` of `model_name` to `version`, when, why, on what numbers."""

    changed_at: datetime  # UTC
    model_name: str
    alias: str
    version: str
    previous_version: str | None
    changed_by: str  # user@host
    reason: str
    metrics: dict[str, float]
    run_id: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"changed_at": self.changed_at.isoformat()}


def alias_history_url(paths: Paths) -> str:
    return f"sqlite:///{paths.mlruns_dir.resolve() / ALIAS_HISTORY_FILE}"


def _alias_history_engine(paths: Paths) -> sa.Engine:
    paths.mlruns_dir.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(alias_history_url(paths))
    _ALIAS_METADATA.create_all(engine)
    return engine


def changed_by() -> str:
    """`user@host` of this process."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_alias_change(paths: Paths, change: AliasChange) -> None:
    """Append `change` to the alias history table (committed when this returns)."""
    engine = _alias_history_engine(paths)
    try:
        with engine.begin() as connection:
            connection.execute(
                ALIAS_HISTORY.insert().values(
                    changed_at=change.changed_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    model_name=change.model_name,
                    alias=change.alias,
                    version=change.version,
                    previous_version=change.previous_version,
                    changed_by=change.changed_by,
                    reason=change.reason,
                    metrics_json=json.dumps(change.metrics, sort_keys=True),
                    run_id=change.run_id,
                )
            )
    finally:
        engine.dispose()


def alias_history(paths: Paths, model_name: str | None = None) -> list[AliasChange]:
    """Every recorded alias change (of `model_name`, or of every model), oldest first."""
    engine = _alias_history_engine(paths)
    query = sa.select(ALIAS_HISTORY).order_by(ALIAS_HISTORY.c.change_id)
    if model_name is not None:
        query = query.where(ALIAS_HISTORY.c.model_name == model_name)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
    finally:
        engine.dispose()
    return [
        AliasChange(
            changed_at=datetime.fromisoformat(row["changed_at"]),
            model_name=row["model_name"],
            alias=row["alias"],
            version=row["version"],
            previous_version=row["previous_version"],
            changed_by=row["changed_by"],
            reason=row["reason"],
            metrics=json.loads(row["metrics_json"]),
            run_id=row["run_id"],
        )
        for row in rows
    ]


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flat name -> float of every finite number in `metrics` (nested dicts flattened, as logged)."""
    flat = _flatten("", metrics)
    return {
        key: float(value)
        for key, value in flat.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def mark_version(
    paths: Paths, model_name: str, version: str, promoted: bool, reason: str, metrics: Mapping[str, Any]
) -> str:
    """Move `champion` to the version when promoted, else make it the `challenger`; return the alias.

    Every move is recorded with who (user@host), when, why (`reason`, the decision in words) and the
    numbers behind it (`metrics`, flattened): as tags on the run that registered the version (`alias`,
    `decision`, `alias_changed_by`, `alias_changed_at`) and as a row of the alias history table
    (`alias_history`)."""
    alias = CHAMPION if promoted else CHALLENGER
    change_time = datetime.now(UTC)
    with store_errors(paths, "write"):
        client = MlflowClient()
        aliases = client.get_registered_model(model_name).aliases
        previous = aliases.get(alias)
        client.set_registered_model_alias(model_name, alias, version)
        run_id = str(client.get_model_version(model_name, version).run_id)
        who = changed_by()
        tags = {
            "alias": alias,
            "decision": reason,
            "alias_changed_by": who,
            "alias_changed_at": change_time.isoformat(),
        }
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        record_alias_change(
            paths,
            AliasChange(
                changed_at=change_time,
                model_name=model_name,
                alias=alias,
                version=str(version),
                previous_version=None if previous is None else str(previous),
                changed_by=who,
                reason=reason,
                metrics=_numbers(metrics),
                run_id=run_id,
            ),
        )
    return alias


def log_drift(paths: Paths, model_name: str, version: str, report: Mapping[str, Any], html_path: Path) -> str:
    """Log a drift report on a new run `drift-<model>` (params model and version, metrics `psi_<column>`
    and `psi_max`, the HTML page under `drift/`) and tag the model version with the PSI max and status
    (what `GET /models` shows). Returns the run id."""
    with start_run(paths, f"drift-{model_name.removeprefix('partnermatch-')}") as run:
        run.log_params({"model": model_name, "version": version, "rows": report["rows"]})
        run.log_metrics({"psi": report["psi"], "psi_max": report["psi_max"]})
        run.set_tags({DRIFT_STATUS_TAG: str(report["status"])})
        run.log_artifact(html_path, "drift")
    with store_errors(paths, "write"):
        client = MlflowClient()
        client.set_model_version_tag(model_name, version, DRIFT_PSI_MAX_TAG, f"{report['psi_max']:.6f}")
        client.set_model_version_tag(model_name, version, DRIFT_STATUS_TAG, str(report["status"]))
    return run.run_id
