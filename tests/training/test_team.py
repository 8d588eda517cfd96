"""The team training flow end to end on a tiny world: registered, evaluated, and sane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import CHAMPION, REGISTERED_TEAM_MODEL, Paths, version_by_alias
from training.config import TeamConfig
from training.team import bootstrap_margin, run_team_training


@pytest.mark.integration
def test_team_training_registers_and_reports(tmp_path: Path) -> None:
    config = TeamConfig(
        ecosystem=EcosystemConfig(partners=150, deals=1500, team_deals=400, seed=2),
        encoder="hashing-32",
        candidates_per_requirement=6,
        evaluation_deals=4,
        exact_candidates=3,
        batch_deals=60,
        bootstrap=100,
    )
    ecosystem, truth = generate_ecosystem(config.ecosystem)
    paths = Paths(mlruns_dir=tmp_path / "mlruns", cache_dir=tmp_path / "cache")
    report = run_team_training(config, paths, ecosystem, truth)
    assert report.alias == CHAMPION
    assert version_by_alias(paths, REGISTERED_TEAM_MODEL, CHAMPION) is not None
    assembly = report.metrics["assembly"]
    assert assembly["optimiser_vs_exact"]["above_exact"] == 0
    assert assembly["true_win_probability"]["model"] > assembly["true_win_probability"]["random_team"]
    batch = report.metrics["batch_assignment"]
    assert batch["global_expected_wins"] >= batch["greedy_expected_wins"]
    assert batch["exposure_share_met"] >= config.exposure_share - 1e-9


def test_bootstrap_margin_brackets_the_mean() -> None:
    rng = np.random.default_rng(0)
    ours, other = rng.random(300) + 0.1, rng.random(300)
    margin = bootstrap_margin(ours, other, 500, 0)
    assert margin["ci_low"] < margin["margin"] < margin["ci_high"]
    assert margin["margin"] == np.mean(ours - other)
