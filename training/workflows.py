"""End-to-end workflows behind the CLI: generate, load, train, make sure a champion exists, and the
Maven CRM null-control evaluation."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from features import io, schema
from features.embed import Encoder, make_encoder
from features.pairs import FEATURE_COLUMNS
from features.progress import SILENT, Progress
from features.public_data import MAVEN_LEAK_COLUMN, load_maven, load_maven_close_values
from features.synthetic import EcosystemConfig, GroundTruth, generate_ecosystem
from models.registry import Paths
from training.config import SplitConfig, TrainConfig, WinModelConfig
from training.stages import (
    TrainReport,
    build_dataset,
    current_champion,
    embed_ecosystem,
    evaluate_models,
    fit_models,
    run_training,
    time_split,
)

GENERATOR_CONFIG_FILE = "generator.json"
DEMO_ECOSYSTEM_DIR = "demo-ecosystem"  # under the cache dir


def generate_to_directory(config: EcosystemConfig, out: Path, progress: Progress = SILENT) -> dict[str, Any]:
    """Generate an ecosystem, write its tables and ground truth under `out`; return row counts."""
    ecosystem, truth = generate_ecosystem(config, progress=progress)
    progress.step(f"writing {out}")
    io.write_ecosystem(ecosystem, out)
    truth.save(out)
    # Written last: its presence marks a complete directory.
    text = json.dumps(asdict(config), indent=2, default=str)
    io.write_atomically(out / GENERATOR_CONFIG_FILE, lambda path: path.write_text(text))
    return {spec.name: len(getattr(ecosystem, spec.name)) for spec in schema.ECOSYSTEM_TABLES} | {"out": str(out)}


def load_ecosystem_directory(directory: Path) -> tuple[schema.Ecosystem, GroundTruth | None]:
    """Validated tables, plus the ground truth when the directory came from the generator."""
    ecosystem = io.read_ecosystem(directory)
    truth = GroundTruth.load(directory) if (directory / GENERATOR_CONFIG_FILE).is_file() else None
    return ecosystem, truth


def demo_ecosystem(
    config: EcosystemConfig, paths: Paths, progress: Progress = SILENT
) -> tuple[schema.Ecosystem, GroundTruth]:
    """The demo ecosystem for `config`, generated once and reused from the cache."""
    directory = (
        paths.cache_dir / DEMO_ECOSYSTEM_DIR / f"partners{config.partners}-deals{config.deals}-seed{config.seed}"
    )
    if not (directory / GENERATOR_CONFIG_FILE).is_file():
        generate_to_directory(config, directory, progress)
    ecosystem, truth = load_ecosystem_directory(directory)
    assert truth is not None
    return ecosystem, truth


def train_from_options(
    config: TrainConfig,
    paths: Paths,
    data_dir: Path | None,
    progress: Progress = SILENT,
    dask_scheduler: str | None = None,
) -> TrainReport:
    """Train on `data_dir` (any ecosystem directory) or on the demo ecosystem of the config; the win
    model's LightGBM on the Dask cluster at `dask_scheduler` when given.

    The registry is read first: one that cannot be read fails (RegistryError) before any data is
    loaded or generated."""
    current_champion(paths)
    if data_dir is not None:
        ecosystem, truth = load_ecosystem_directory(data_dir)
    else:
        ecosystem, truth = demo_ecosystem(config.ecosystem, paths, progress)
    return run_training(config, paths, ecosystem, truth, progress, dask_scheduler)


def ensure_champion(config: TrainConfig, paths: Paths, progress: Progress = SILENT) -> str:
    """The champion's version, training a first model on the demo ecosystem only when the registry
    is readable and has none (RegistryError otherwise)."""
    champion = current_champion(paths)
    if champion is not None:
        return champion.version
    progress.step("no champion registered: training a first model on the demo ecosystem")
    return train_from_options(config, paths, None, progress).version.version


def evaluate_maven(
    data_dir: Path,
    include_leak: bool = False,
    encoder: Encoder | None = None,
    split: SplitConfig | None = None,
    model_config: WinModelConfig | None = None,
) -> dict[str, Any]:
    """The whole win-model pipeline on the Maven CRM fixture (agents as partners), time-split.

    Its outcomes carry no signal, so a leak-free model must score ROC-AUC ~0.5; with
    `include_leak` the post-outcome `close_value` joins the features and ROC-AUC jumps to ~1.
    """
    ecosystem = load_maven(data_dir)
    dataset = build_dataset(ecosystem, embed_ecosystem(ecosystem, encoder or make_encoder("hashing-64", None)))
    splits = time_split(dataset, split or SplitConfig())
    feature_names = FEATURE_COLUMNS
    if include_leak:
        close_values = load_maven_close_values(data_dir)
        values = close_values.reindex(ecosystem.outcomes[schema.DEAL_ID].astype(str)).to_numpy(dtype=np.float64)
        splits = splits.with_feature(MAVEN_LEAK_COLUMN, values)
        feature_names = (*FEATURE_COLUMNS, MAVEN_LEAK_COLUMN)
    fitted = fit_models(model_config or WinModelConfig(), splits, feature_names)
    results: dict[str, Any] = evaluate_models(fitted.all, splits.test, None)
    results["rows"] = splits.row_counts()
    results["calibration"] = fitted.model.calibration_.to_dict()
    results["include_leak"] = include_leak
    return results
