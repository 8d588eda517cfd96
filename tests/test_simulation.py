"""The routing simulation at smoke size: 2 months of a small ecosystem, hashing encoder, few trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from features import schema
from features.embed import make_encoder
from features.pairs import ATTEMPTS_OVERALL, FEATURE_COLUMNS, LOAD_RATIO, product_mask
from features.synthetic import EcosystemConfig
from partnermatch.cli import app
from partnermatch.simulation import (
    FROZEN,
    LIVE,
    LIVE_RETRAIN,
    ORACLE,
    ROUND_ROBIN,
    ROUTERS,
    RouterMarket,
    SimulationConfig,
    SimulationResult,
    WeightedRoundRobin,
    fit_model,
    lift,
    model_router,
    open_market,
    router_at,
    simulate,
    summary,
)
from serving.routing.state import single_deal, single_deal_features
from training.config import RetrainConfig, TrainConfig, WinModelConfig

SMOKE = SimulationConfig(
    history=EcosystemConfig(partners=150, deals=1500, days=365),
    months=2,
    retrain=RetrainConfig(
        train=TrainConfig(encoder="hashing-32", model=WinModelConfig(n_estimators=20, min_child_samples=20)),
        resamples=100,
    ),
    resamples=200,
)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return simulate(SMOKE, tmp_path_factory.mktemp("cache"))


def test_every_router_routes_every_stream_deal_once(result: SimulationResult) -> None:
    assert tuple(result.runs) == ROUTERS
    for run in result.runs.values():
        assert run.partner.shape == result.month.shape
        assert (run.partner >= 0).all()
        assert ((run.true_probability > 0) & (run.true_probability < 1)).all()
    assert set(np.unique(result.month)) == {0, 1}


def test_the_oracle_expects_at_least_as_many_wins_as_every_router(result: SimulationResult) -> None:
    totals = result.totals()
    for name in ROUTERS:
        assert totals[ORACLE]["expected_wins"] >= totals[name]["expected_wins"]
    # Routing on merit beats the rotation even with the first model.
    assert totals[FROZEN]["expected_wins"] > totals[ROUND_ROBIN]["expected_wins"]


def test_common_random_numbers_tie_outcomes_to_the_true_probability(result: SimulationResult) -> None:
    """Same draw per deal for every router: a router whose chosen partner is more likely to win
    never loses a deal that a less likely choice won."""
    oracle, round_robin = result.runs[ORACLE], result.runs[ROUND_ROBIN]
    surer = oracle.true_probability >= round_robin.true_probability
    assert not (surer & round_robin.won & ~oracle.won).any()


def test_live_routers_route_differently_from_the_frozen_one(result: SimulationResult) -> None:
    assert (result.runs[LIVE].partner != result.runs[FROZEN].partner).any()
    # Before the first retrain, live and live_retrain are the same router on the same market.
    first_month = result.month == 0
    assert np.array_equal(result.runs[LIVE].partner[first_month], result.runs[LIVE_RETRAIN].partner[first_month])


def test_one_retrain_per_month_after_the_first(result: SimulationResult) -> None:
    (record,) = result.retrains
    assert record.month == 1 and record.challenger_version == "2"
    assert record.comparison is not None and record.comparison.deals > 0
    assert record.serving_version == ("2" if record.promoted else "1")


def test_the_crm_caps_hold_for_the_round_robin(result: SimulationResult) -> None:
    """Recount each partner's load when the round robin gave it a deal: below its declared capacity
    whenever the pool was capped (legacy attempts and the round robin's own earlier deals)."""
    market = open_market(SMOKE)
    run = result.runs[ROUND_ROBIN]
    window = int(schema.LOAD_WINDOW.total_seconds())
    assert run.capped.mean() > 0.9
    for deal in np.flatnonzero(run.capped):
        partner, seconds = run.partner[deal], market.stream_seconds[deal]
        earlier = (market.stream_seconds[:deal] >= seconds - window) & (market.stream_seconds[:deal] < seconds)
        legacy = market.legacy_load.sum_before(np.array([partner] * 2), np.array([seconds, seconds - window]))
        load = legacy[0, 0] - legacy[1, 0] + np.sum(run.partner[:deal][earlier] == partner)
        assert load < market.declared_capacity[partner]


def test_weighted_round_robin_follows_the_weights_among_the_candidates() -> None:
    rotation = WeightedRoundRobin(np.array([1.0, 2.0, 3.0, 10.0]))
    picks = [rotation.pick(np.array([0, 1, 2])) for _ in range(60)]
    assert np.bincount(picks, minlength=4).tolist() == [10, 20, 30, 0]
    # Smooth: the heaviest candidate never takes more than two turns in a row here.
    assert not any(picks[start : start + 3] == [2, 2, 2] for start in range(len(picks) - 2))


def test_live_features_move_a_partners_next_features_after_its_outcomes(tmp_path: Path) -> None:
    """A partner given the first stream deals shows those attempts, and their load, once they close."""
    market = open_market(SMOKE)
    encoder = make_encoder(SMOKE.retrain.train.encoder, tmp_path)
    first = fit_model(market.history, SMOKE.retrain.train, encoder)
    frozen = model_router(first.model, first.dataset, market.history, encoder, "1")
    routed = RouterMarket(market)
    # A partner of the deal's region without open legacy deals: only the five new ones reach it.
    legacy = np.isin(market.partner_ids, market.pending_outcomes[schema.PARTNER_ID].to_numpy())
    partner = int(np.flatnonzero(market.operating[:, market.stream_region[0]] & ~legacy)[0])
    for _ in range(5):
        routed.assign(partner, 0.5, capped=True)
    now = int(market.close_seconds[:5].max()) + 1
    live = router_at(frozen, routed, market.start_seconds, now)
    row = live.context.partner_position[str(market.partner_ids[partner])]
    deal = single_deal(
        now,
        live.state.region_positions[market.stream[schema.DEAL_REGION].iloc[0]],
        product_mask([market.stream[schema.DEAL_PRODUCTS].iloc[0]], live.context.products)[0],
        10_000.0,
        np.zeros(encoder.dimension, dtype=np.float32),
    )
    before, after = (
        single_deal_features(context, deal, np.array([row]))[0] for context in (frozen.context, live.context)
    )
    attempts, load = FEATURE_COLUMNS.index(ATTEMPTS_OVERALL), FEATURE_COLUMNS.index(LOAD_RATIO)
    assert np.expm1(after[attempts]) == pytest.approx(np.expm1(before[attempts]) + 5, abs=1e-3)
    in_window = np.sum(market.stream_seconds[:5] >= now - int(schema.LOAD_WINDOW.total_seconds()))
    capacity = live.context.partner_capacity[row]
    assert after[load] - before[load] == pytest.approx(in_window / capacity, abs=1e-5)
    # The frozen router never hears of them.
    assert frozen.state.as_of_seconds < market.start_seconds + 1 < live.state.as_of_seconds


def test_lift_is_paired_over_deals() -> None:
    exact = lift(np.full(100, 2.0), np.ones(100), resamples=50)
    assert exact["difference"] == 100.0 and exact["relative"] == pytest.approx(1.0)
    assert exact["relative_ci_low"] == pytest.approx(1.0) and exact["relative_ci_high"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    control = rng.random(500)
    noisy = lift(control + rng.normal(0.1, 0.05, 500), control, resamples=200)
    assert noisy["difference_ci_low"] < noisy["difference"] < noisy["difference_ci_high"]
    assert noisy["relative_ci_low"] > 0


def test_summary_reports_the_headline_lift_and_every_month(result: SimulationResult) -> None:
    report = summary(result, SMOKE)
    headline = report["lift"][f"{LIVE_RETRAIN}_vs_{ROUND_ROBIN}"]
    assert set(headline) == {"won_deals", "revenue", "expected_wins", "expected_revenue"}
    totals = result.totals()
    assert headline["won_deals"]["treatment"] == totals[LIVE_RETRAIN]["realised_wins"]
    assert headline["revenue"]["control"] == pytest.approx(totals[ROUND_ROBIN]["revenue"])
    assert len(report["monthly"]) == len(ROUTERS) * SMOKE.months
    json.dumps(report)


def test_simulate_command_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "tiny.toml"
    config.write_text('encoder = "hashing-32"\n[ecosystem]\ndays = 365\n[model]\nn_estimators = 10\n')
    out = tmp_path / "simulation.json"
    arguments = ["simulate", "--months", "1", "--partners", "120", "--deals", "1200", "--config", str(config)]
    outcome = CliRunner().invoke(app, [*arguments, "--json", str(out)])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(out.read_text())
    assert report["setup"]["months"] == 1 and report["setup"]["partners"] == 120
    assert set(report["totals"]) == set(ROUTERS)
    assert report["retrains"] == []
