"""The team training flow end to end on a tiny world: registered, evaluated, and sane."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.embed import make_encoder
from features.index import PartnerIndex
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import CHAMPION, REGISTERED_TEAM_MODEL, Paths, version_by_alias
from models.team import TEAM_FEATURES, TEAM_LOG_FIT, TEAM_MAX_LOAD, TEAM_MONOTONE_DIRECTIONS
from training.config import TeamConfig
from training.stages import build_dataset, embed_ecosystem
from training.team import (
    TeamReport,
    bootstrap_margin,
    candidate_rows,
    fit_team_model,
    promotion_window,
    run_team_training,
)
from training.win_model import PairFrame

TINY_TEAM = TeamConfig(
    ecosystem=EcosystemConfig(partners=150, deals=1500, team_deals=400, seed=2),
    encoder="hashing-32",
    candidates_per_requirement=6,
    evaluation_deals=4,
    exact_candidates=3,
    batch_deals=60,
    bootstrap=100,
)


@pytest.fixture(scope="module")
def tiny_team_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Paths, schema.Ecosystem, TeamReport]]:
    """One team training run on a tiny world, in an MLflow store of its own."""
    root = tmp_path_factory.mktemp("team-training")
    ecosystem, truth = generate_ecosystem(TINY_TEAM.ecosystem)
    paths = Paths(mlruns_dir=root / "mlruns", cache_dir=root / "cache")
    with pytest.MonkeyPatch.context() as patch:
        # An earlier test's mlflow.set_tracking_uri leaves the variable set, and it overrides `paths`.
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield paths, ecosystem, run_team_training(TINY_TEAM, paths, ecosystem, truth)


@pytest.mark.integration
def test_team_training_registers_and_reports(tiny_team_run: tuple[Paths, schema.Ecosystem, TeamReport]) -> None:
    config = TINY_TEAM
    paths, _, report = tiny_team_run
    assert report.alias == CHAMPION
    assert version_by_alias(paths, REGISTERED_TEAM_MODEL, CHAMPION) is not None
    assembly = report.metrics["assembly"]
    assert assembly["optimiser_vs_exact"]["above_exact"] == 0
    assert assembly["true_win_probability"]["model"] > assembly["true_win_probability"]["random_team"]
    batch = report.metrics["batch_assignment"]
    assert batch["global_expected_wins"] >= batch["greedy_expected_wins"]
    assert batch["exposure_share_met"] >= config.exposure_share - 1e-9


@pytest.mark.integration
def test_team_reports_only_test_window_deals(tiny_team_run: tuple[Paths, schema.Ecosystem, TeamReport]) -> None:
    _, ecosystem, report = tiny_team_run
    created = pd.to_datetime(ecosystem.deals[schema.CREATED_AT]).to_numpy()
    promotion, test = report.promotion_deal_rows, report.test_deal_rows
    assert promotion.size >= TINY_TEAM.min_validation_team_deals  # the validation window decided
    assert "validation team deals" in report.decision
    assert np.intersect1d(promotion, test).size == 0
    assert created[test].min() > created[promotion].max()  # the test window comes after
    assert report.metrics["model"]["rows"] == test.size == report.metrics["rows"]["test"]
    assert report.metrics["min_fit"]["rows"] == test.size
    assert set(report.assembled_deal_rows.tolist()) <= set(test.tolist())
    assert report.metrics["assembly"]["deals"] == report.assembled_deal_rows.size


def _team_window(deal_rows: np.ndarray) -> PairFrame:
    features = pd.DataFrame(np.zeros((deal_rows.size, len(TEAM_FEATURES))), columns=list(TEAM_FEATURES))
    return PairFrame(features=features, labels=deal_rows % 2, group_ids=deal_rows, source_rows=deal_rows)


def test_promotion_window_falls_back_to_in_sample_when_validation_is_thin() -> None:
    windows = {
        "train": _team_window(np.arange(0, 40)),
        "calibration": _team_window(np.arange(40, 50)),
        "validation": _team_window(np.arange(50, 55)),
        "test": _team_window(np.arange(55, 70)),
    }
    thin = promotion_window(windows, minimum_deals=6)
    assert thin.scored_on == "in-sample"
    assert thin.deals.group_ids.tolist() == list(range(50))
    assert len(thin.deals.features) == 50
    assert "holds 5 team deals, fewer than 6" in thin.basis
    enough = promotion_window(windows, minimum_deals=5)
    assert enough.scored_on == "validation"
    assert enough.deals.group_ids.tolist() == list(range(50, 55))


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


class _ConstantFit:
    """A win model that rates every (sub-deal, partner) pair alike: the strongest-by-fit half of the
    candidates is then the first eligible partners, and only the text half can find the others."""

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), 0.5)


def test_candidate_rows_take_the_text_neighbours_by_faiss_position(world: schema.Ecosystem) -> None:
    encoder = make_encoder("hashing-32", None)
    dataset = build_dataset(world, embed_ecosystem(world, encoder))
    context, deals = dataset.context, dataset.deals
    index = PartnerIndex.build(context.partner_ids.tolist(), context.partner_vectors)
    product_vectors = encoder.encode(list(context.products))
    per_requirement = 2
    checked = 0
    for deal_row in range(len(world.deals)):
        lists = candidate_rows(
            context,
            _ConstantFit(),
            index,
            product_vectors,
            dataset,
            deal_row,
            per_requirement,  # type: ignore[arg-type]
        )
        eligible = np.flatnonzero(
            context.partner_regions[:, deals.region_index[deal_row]]
            & (context.partner_joined_seconds < deals.created_seconds[deal_row])
        )
        for rows, product in zip(lists, np.flatnonzero(deals.product_mask[deal_row]), strict=True):
            query = deals.vectors[deal_row] + product_vectors[product]
            query /= np.linalg.norm(query)
            # Tie-aware (identical profiles embed alike): the k-th best eligible similarity.
            threshold = np.sort(context.partner_vectors[eligible] @ query)[::-1][per_requirement - 1] - 1e-6

            def text_hits(candidates: np.ndarray) -> int:
                return int((context.partner_vectors[candidates] @ query >= threshold).sum())  # noqa: B023

            assert rows.dtype.kind == "i"
            assert set(eligible[:per_requirement].tolist()) <= set(rows.tolist())
            assert text_hits(rows) >= per_requirement, (deal_row, product)
            checked += int(text_hits(eligible[:per_requirement]) < per_requirement)
    assert checked > 0  # some text neighbours are not among the strongest by fit
