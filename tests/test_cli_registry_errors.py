"""A model registry that is corrupt, locked or not a usable store makes `train` and `serve` fail
fast with exit code 2 and one line naming the store: never read as "no champion", never promote."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, version_by_alias
from partnermatch.cli import app
from training.config import TrainConfig, WinModelConfig
from training.stages import run_training
from training.workflows import DEMO_ECOSYSTEM_DIR

runner = CliRunner()
SMOKE = EcosystemConfig(partners=60, deals=600, seed=3)
TRAIN = ["train", "--partners", "40", "--deals", "200", "--encoder", "hashing-16"]
DATABASE = "mlflow.db"


def _corrupt(mlruns: Path) -> None:
    mlruns.mkdir(parents=True)
    (mlruns / DATABASE).write_bytes(b"\x00garbage\xff" * 1024)


def _store_is_a_file(mlruns: Path) -> None:
    mlruns.parent.mkdir(parents=True, exist_ok=True)
    mlruns.write_text("a file where the store directory should be\n")


def _database_is_a_directory(mlruns: Path) -> None:
    (mlruns / DATABASE).mkdir(parents=True)


def _contents(path: Path) -> dict[str, bytes | None]:
    """Every file's bytes (None for a directory) under `path`, or `path` itself."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(item.relative_to(path)): item.read_bytes() if item.is_file() else None for item in path.rglob("*")}


def _assert_one_line_naming_the_store(output: str, store: Path) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: model registry at ") and str(store.resolve() / DATABASE) in lines[0]
    assert "Traceback" not in output


@pytest.mark.parametrize("command", [TRAIN, ["serve"]], ids=["train", "serve"])
@pytest.mark.parametrize(
    "break_store",
    [_corrupt, _store_is_a_file, _database_is_a_directory],
    ids=["corrupt", "store-is-a-file", "database-is-a-directory"],
)
def test_a_broken_registry_fails_fast_naming_the_store(
    isolated_paths: Path, command: list[str], break_store: Callable[[Path], None]
) -> None:
    mlruns = isolated_paths / "mlruns"
    break_store(mlruns)
    before = _contents(mlruns)

    result = runner.invoke(app, command)

    assert result.exit_code == 2, result.output
    _assert_one_line_naming_the_store(result.output, mlruns)
    assert _contents(mlruns) == before  # nothing written, so nothing promoted
    assert not (isolated_paths / "cache" / DEMO_ECOSYSTEM_DIR).exists()  # failed before generating data


@pytest.mark.integration
def test_a_locked_registry_fails_naming_the_store_and_keeps_the_champion(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    config = TrainConfig(ecosystem=SMOKE, encoder="hashing-16", model=WinModelConfig(n_estimators=1, num_leaves=2))
    champion = run_training(config, paths, generate_ecosystem(SMOKE)[0]).version
    # Another connection holds the write lock: readers wait (up to the probe's 5 s), then fail.
    holder = sqlite3.connect(paths.mlruns_dir / DATABASE, isolation_level=None, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = runner.invoke(app, TRAIN)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 2, result.output
    _assert_one_line_naming_the_store(result.output, paths.mlruns_dir)
    assert "database is locked" in result.output
    after = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert after is not None and after.version == champion.version
    assert len(MlflowClient().search_model_versions(f"name='{REGISTERED_WIN_MODEL}'")) == 1
    assert not (paths.cache_dir / DEMO_ECOSYSTEM_DIR).exists()
