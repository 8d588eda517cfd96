"""The read side of the model registry: where the store lives, which version an alias names, and a
local (cached) copy of a version's bundle. Training writes (`training.tracking`); serving and
training both read through here.

Registered models are `partnermatch-<model>`; aliases `champion` and `challenger`.

Environment variables:
- `PARTNERMATCH_MLRUNS`  MLflow store directory (default `mlruns`): `sqlite:///<dir>/mlflow.db` +
  artifacts under `<dir>/artifacts`. `MLFLOW_TRACKING_URI` overrides the database URI.
- `PARTNERMATCH_CACHE`   embeddings cache, ONNX export, demo ecosystem, downloaded bundles (`.cache`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from features.io import write_atomically

REGISTERED_WIN_MODEL = "partnermatch-win"
REGISTERED_IPP_MODEL = "partnermatch-ipp"
REGISTERED_TEAM_MODEL = "partnermatch-team"
REGISTERED_SENTIMENT_MODEL = "partnermatch-sentiment"
REGISTERED_HEALTH_MODEL = "partnermatch-health"
CHAMPION = "champion"
CHALLENGER = "challenger"
# Version tag of a win model retrained with feedback: the feedback store's latest sequence number
# its history holds (the service layers only later events on it). Absent: none.
FEEDBACK_SEQUENCE_TAG = "feedback_sequence"
BUNDLE_ARTIFACT = "bundle"  # the model directory (a bundle) inside a logged model's artifacts
BUNDLE_CACHE_DIR = "bundles"  # under the cache dir: downloaded bundles, one directory per version
SQLITE_URI_PREFIX = "sqlite:///"
# How long the probe waits for another connection's lock. MLflow itself waits 20 s (a fixed
# busy_timeout) and retries a database file it cannot open for about 100 s.
PROBE_TIMEOUT_SECONDS = 5.0


class RegistryError(RuntimeError):
    """The registry could not be read (down, locked, corrupt): never the same as "nothing registered"."""


@dataclass(frozen=True)
class Paths:
    mlruns_dir: Path = Path("mlruns")
    cache_dir: Path = Path(".cache")

    @classmethod
    def from_environment(cls) -> Paths:
        return cls(
            mlruns_dir=Path(os.environ.get("PARTNERMATCH_MLRUNS", "mlruns")),
            cache_dir=Path(os.environ.get("PARTNERMATCH_CACHE", ".cache")),
        )

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlruns_dir.resolve()}/mlflow.db"

    @property
    def artifact_root(self) -> Path:
        return self.mlruns_dir.resolve() / "artifacts"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)  # model version tags, e.g. "encoder", "features"


class _WithoutTraceback(logging.Filter):
    """MLflow logs a traceback for every database error before raising it; `store_errors` raises the
    same error as one line naming the store, with the original chained."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


_DATABASE_LOGGER = "mlflow.store.db.utils"


def _probe_sqlite(tracking_uri: str) -> None:
    """Open a SQLite store and read its header, so that a corrupt, locked or unopenable file fails
    within `PROBE_TIMEOUT_SECONDS` (sqlite3 errors) instead of after MLflow's waits and retries."""
    if not tracking_uri.startswith(SQLITE_URI_PREFIX):
        return
    connection = sqlite3.connect(tracking_uri.removeprefix(SQLITE_URI_PREFIX), timeout=PROBE_TIMEOUT_SECONDS)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    finally:
        connection.close()


def connect(paths: Paths) -> MlflowClient:
    """A client on the project's store (the SQLite file and its folder are created on first use).
    Raises the store's own error (OSError, sqlite3.Error) when it cannot be opened and read:
    callers wrap it in `store_errors`."""
    database_logger = logging.getLogger(_DATABASE_LOGGER)
    if not any(isinstance(existing, _WithoutTraceback) for existing in database_logger.filters):
        database_logger.addFilter(_WithoutTraceback())
    paths.mlruns_dir.mkdir(parents=True, exist_ok=True)
    _probe_sqlite(paths.tracking_uri)
    mlflow.set_tracking_uri(paths.tracking_uri)
    mlflow.set_registry_uri(paths.tracking_uri)
    return MlflowClient(tracking_uri=paths.tracking_uri, registry_uri=paths.tracking_uri)


def _not_found(error: MlflowException) -> bool:
    return error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


@contextmanager
def store_errors(paths: Paths, action: str) -> Iterator[None]:
    """Raise any error inside (MLflow, SQLAlchemy, OS) as a one-line RegistryError naming the store
    and what could not be done (`action`: "read", "write", "fetch <model> v<n>"); the original is
    chained."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as error:
        raise RegistryError(f"model registry at {paths.tracking_uri}: cannot {action}: {one_line(error)}") from error


def one_line(error: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy appends the SQL and a link), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def version_by_alias(paths: Paths, model_name: str, alias: str) -> RegisteredVersion | None:
    """The version behind `alias`; None only when the model or the alias does not exist.

    Raises RegistryError naming the store when the registry cannot be read (down, locked, corrupt).
    """
    with store_errors(paths, "read"):
        client = connect(paths)
        try:
            model = client.get_registered_model(model_name)
        except MlflowException as error:
            if _not_found(error):
                return None
            raise
        # Not get_model_version_by_alias: it reports a missing alias as INVALID_PARAMETER_VALUE, the
        # code it also uses for real faults.
        if alias not in model.aliases:
            return None
        found = client.get_model_version(model_name, str(model.aliases[alias]))
    return _registered(model_name, found)


def run_params(paths: Paths, run_id: str) -> dict[str, str]:
    """The params logged on run `run_id` (flat names, string values); empty when the run is gone.

    Raises RegistryError naming the store when it cannot be read.
    """
    with store_errors(paths, "read"):
        try:
            return dict(connect(paths).get_run(run_id).data.params)
        except MlflowException as error:
            if _not_found(error):
                return {}
            raise


def download_bundle(paths: Paths, version: RegisteredVersion, destination: Path) -> Path:
    """Copy a registered version's bundle directory under `destination` (created); return the bundle path."""
    destination.mkdir(parents=True, exist_ok=True)
    with store_errors(paths, f"fetch {version.name} v{version.version}"):
        connect(paths)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(destination)
        )
    return Path(local) / "artifacts" / BUNDLE_ARTIFACT


def local_bundle(paths: Paths, version: RegisteredVersion) -> Path:
    """The version's bundle directory under the cache, downloaded once (atomically: workers may race).
    Keyed by run id too: two MLflow stores sharing one cache both have a "v1"."""
    final = paths.cache_dir / BUNDLE_CACHE_DIR / f"{version.name}-v{version.version}-{version.run_id}"
    if not final.is_dir():
        try:
            write_atomically(final, lambda staging: download_bundle(paths, version, staging))
        except OSError:
            if not final.is_dir():
                raise
            # else another process published it first; its copy is as good
    return final / "artifacts" / BUNDLE_ARTIFACT


def registered_version(paths: Paths, model_name: str, version: str) -> RegisteredVersion | None:
    """Version `version` of `model_name` with its current aliases and tags; None when it does not exist.

    Raises RegistryError naming the store when the registry cannot be read.
    """
    with store_errors(paths, "read"):
        try:
            found = connect(paths).get_model_version(model_name, version)
        except MlflowException as error:
            if _not_found(error):
                return None
            raise
    return _registered(model_name, found)


def _registered(model_name: str, found: ModelVersion) -> RegisteredVersion:
    return RegisteredVersion(
        name=model_name,
        version=str(found.version),
        run_id=str(found.run_id),
        aliases=tuple(found.aliases),
        tags=dict(found.tags),
    )
