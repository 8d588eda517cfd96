"""The team training flow end to end on a tiny world: registered, evaluated, and sane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import CHAMPION, REGISTERED_TEAM_MODEL, Paths, version_by_alias
from models.team import TEAM_FEATURES, TEAM_LOG_FIT, TEAM_MAX_LOAD, TEAM_MONOTONE_DIRECTIONS
from training.config import TeamConfig
from training.team import bootstrap_margin, fit_team_model, run_team_training
from training.win_model import PairFrame


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


def test_team_model_keeps_the_domain_signs_and_extrapolates() -> None:
    """Legacy teams are weak; the fitted model must still rank stronger teams higher."""
    rng = np.random.default_rng(1)
    rows = 3000
    features = pd.DataFrame(rng.random((rows, len(TEAM_FEATURES))), columns=list(TEAM_FEATURES))
    features[TEAM_LOG_FIT] = rng.uniform(-8.0, -2.0, rows)  # never a strong team in history
    logit = 0.6 * features[TEAM_LOG_FIT] + 2.0 - 2.0 * features[TEAM_MAX_LOAD]
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).to_numpy().astype(np.int64)
    frame = PairFrame(features=features, labels=labels, group_ids=np.arange(rows), source_rows=np.arange(rows))
    model = fit_team_model(TeamConfig(), frame, frame)
    for name, sign in TEAM_MONOTONE_DIRECTIONS.items():
        assert sign * model.coefficients[TEAM_FEATURES.index(name)] >= 0.0, name
    strong = np.tile(features.median().to_numpy(), (3, 1))
    strong[:, TEAM_FEATURES.index(TEAM_LOG_FIT)] = [-2.0, -1.0, -0.2]  # beyond the history
    probability = model.predict_win_probability(strong)
    assert probability[0] < probability[1] < probability[2]
    assert model.coefficients[TEAM_FEATURES.index(TEAM_LOG_FIT)] == pytest.approx(0.6, abs=0.15)
