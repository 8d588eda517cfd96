"""training.health on a small synthetic world: point-in-time rows and labels, grouped and time-ordered
splits, a fitted model that ranks disengagement above chance, bands from the base rate, a saved model
that reads back and answers the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features import schema
from features.health import AS_OF, MessageScores
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.health import HealthModel, UnknownPartnersError
from training.config import HealthConfig
from training.health import LABEL, HealthFit, fit_health, labelled_rows, split_rows

CONFIG = HealthConfig(
    ecosystem=EcosystemConfig(
        partners=500,
        deals=4000,
        days=1095,
        seed=2,
        disengagement_per_partner_year=0.5,
        engagement_per_partner_month=20.0,
    ),
    calibration="platt",
    bootstrap_resamples=10,
    n_estimators=80,
)


@pytest.fixture(scope="module")
def fitted() -> tuple[HealthFit, schema.Ecosystem]:
    ecosystem, truth = generate_ecosystem(CONFIG.ecosystem)
    # Neutral message scores: the engagement decline alone must carry the model here.
    count = len(ecosystem.communications)
    scores = MessageScores(np.zeros(count), np.zeros(count))
    return fit_health(ecosystem, truth, scores, CONFIG), ecosystem


def test_rows_labels_and_splits_are_grouped_and_time_ordered() -> None:
    ecosystem, truth = generate_ecosystem(CONFIG.ecosystem)
    rows = labelled_rows(ecosystem, truth, CONFIG)
    assert 0.0 < rows[LABEL].mean() < 0.5
    split = split_rows(rows, ecosystem, CONFIG)
    train_partners = set(rows.loc[split.train | split.calibration, schema.PARTNER_ID])
    assert train_partners.isdisjoint(rows.loc[split.test, schema.PARTNER_ID])
    assert (rows.loc[split.train, AS_OF].max() + np.timedelta64(90, "D")) <= split.cut
    assert rows.loc[split.test, AS_OF].min() >= split.cut
    assert not (split.train & split.calibration).any()


def test_model_ranks_disengagement_and_bands_follow_the_base_rate(fitted: tuple[HealthFit, schema.Ecosystem]) -> None:
    fit, _ = fitted
    metrics = fit.metrics
    # Drift starts 60 days before an episode, so rows 60-90 days ahead carry no signal: modest AUCs.
    assert metrics["model"]["roc_auc"] > 0.5
    assert metrics["health_score"]["roc_auc"] > 0.5
    shares = metrics["health_score"]["share_by_band"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert metrics["health_score"]["at_risk_below"] <= metrics["health_score"]["watch_below"]
    assert 0.0 <= metrics["health_score"]["stability"]["test_rows_changing_band_mean"] <= 1.0
    assert metrics["model"]["episodes"] > 0


def test_saved_model_reads_back_and_names_unknown_partners(
    fitted: tuple[HealthFit, schema.Ecosystem], tmp_path: Path
) -> None:
    fit, ecosystem = fitted
    ids = ecosystem.partners[schema.PARTNER_ID].astype(str).tolist()[:5]
    loaded = HealthModel.load(fit.model.save(tmp_path / "bundle"))
    first, again = fit.model.assess(ids), loaded.assess(ids)
    assert [row.score for row in first] == pytest.approx([row.score for row in again])
    assert [row.disengagement_probability for row in first] == pytest.approx(
        [row.disengagement_probability for row in again]
    )
    with pytest.raises(UnknownPartnersError, match="'ghost'"):
        loaded.assess([ids[0], "ghost"])
    assert loaded.partner_kpis(ids[0])["recommendation"] in ("promote", "keep", "review")


def test_an_engagement_collapse_raises_risk_and_lowers_the_score(fitted: tuple[HealthFit, schema.Ecosystem]) -> None:
    """Directional: the same partner with its recent engagement gone looks riskier and less healthy."""
    fit, _ = fitted
    model = fit.model
    steady = model.snapshot.head(20).copy()
    collapsed = steady.assign(
        engagement_30d=0.0, engagement_trend=-10.0, logins_trend=-10.0, days_since_engagement=90.0
    )
    assert (model.probability(collapsed) >= model.probability(steady)).all()
    assert (model.probability(collapsed) > model.probability(steady)).any()
    scorer = model.scorer
    assert (scorer.score(scorer.components(collapsed)) <= scorer.score(scorer.components(steady))).all()
