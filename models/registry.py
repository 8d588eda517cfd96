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

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

REGISTERED_WIN_MODEL = "partnermatch-win"
REGISTERED_SENTIMENT_MODEL = "partnermatch-sentiment"
CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "bundle"  # the model directory (a bundle) inside a logged model's artifacts
BUNDLE_CACHE_DIR = "bundles"  # under the cache dir: downloaded bundles, one directory per version


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


def connect(paths: Paths) -> MlflowClient:
    """A client on the project's store (the SQLite file and its folder are created on first use)."""
    paths.mlruns_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(paths.tracking_uri)
    mlflow.set_registry_uri(paths.tracking_uri)
    return MlflowClient(tracking_uri=paths.tracking_uri, registry_uri=paths.tracking_uri)


def _not_found(error: MlflowException) -> bool:
    return error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def version_by_alias(paths: Paths, model_name: str, alias: str) -> RegisteredVersion | None:
    """The version behind `alias`; None only when the model or the alias does not exist.

    Raises RegistryError naming the store when the registry cannot be read.
    """
    try:
        found = connect(paths).get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if _not_found(error):
            return None
        raise RegistryError(f"model registry at {paths.tracking_uri} cannot be read: {error.message}") from error
    except Exception as error:  # SQLAlchemy and OS errors surface raw from the store
        raise RegistryError(f"model registry at {paths.tracking_uri} cannot be read: {error}") from error
    return RegisteredVersion(
        name=model_name, version=str(found.version), run_id=str(found.run_id), aliases=tuple(found.aliases)
    )


def download_bundle(paths: Paths, version: RegisteredVersion, destination: Path) -> Path:
    """Copy a registered version's bundle directory under `destination`; return the bundle path."""
    connect(paths)
    uri = f"models:/{version.name}/{version.version}"
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination))
    except Exception as error:
        message = f"{version.name} v{version.version} cannot be fetched from {paths.tracking_uri}: {error}"
        raise RegistryError(message) from error
    return Path(local) / "artifacts" / BUNDLE_ARTIFACT


def local_bundle(paths: Paths, version: RegisteredVersion) -> Path:
    """The version's bundle directory under the cache, downloaded once (atomically: workers may race).
    Keyed by run id too: two MLflow stores sharing one cache both have a "v1"."""
    root = paths.cache_dir / BUNDLE_CACHE_DIR
    final = root / f"{version.name}-v{version.version}-{version.run_id}"
    if not final.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        download_bundle(paths, version, staging)
        try:
            staging.rename(final)
        except OSError:  # another process finished first; its copy is as good
            shutil.rmtree(staging, ignore_errors=True)
    return final / "artifacts" / BUNDLE_ARTIFACT
