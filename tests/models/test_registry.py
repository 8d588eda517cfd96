"""models.registry read side on a real MLflow store: "nothing registered" (None) is told apart from a
store that cannot be read (RegistryError naming it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.registry import (
    CHALLENGER,
    CHAMPION,
    REGISTERED_WIN_MODEL,
    Paths,
    RegistryError,
    connect,
    run_params,
    version_by_alias,
)


def test_a_missing_model_or_alias_reads_as_none(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    assert version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION) is None
    client = connect(paths)
    client.create_registered_model(REGISTERED_WIN_MODEL)
    assert version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION) is None
    version = client.create_model_version(REGISTERED_WIN_MODEL, source=str(isolated_paths), tags={"features": "a,b"})
    client.set_registered_model_alias(REGISTERED_WIN_MODEL, CHALLENGER, version.version)

    assert version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION) is None
    challenger = version_by_alias(paths, REGISTERED_WIN_MODEL, CHALLENGER)
    assert challenger is not None and challenger.version == str(version.version)
    assert challenger.aliases == (CHALLENGER,) and challenger.tags == {"features": "a,b"}
    assert run_params(paths, "0" * 32) == {}


def test_a_corrupt_store_raises_naming_it(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    paths.mlruns_dir.mkdir(parents=True)
    database = paths.mlruns_dir / "mlflow.db"
    database.write_bytes(b"\x00not sqlite\xff" * 512)
    for read in (
        lambda: version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION),
        lambda: run_params(paths, "0" * 32),
    ):
        with pytest.raises(RegistryError, match=f"{database.resolve()}: cannot read: file is not a database$"):
            read()
