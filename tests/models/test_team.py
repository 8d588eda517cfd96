"""Team assembly on hand-built instances: optimiser vs exhaustive search, limits, Shapley credit,
errors; global assignment vs greedy; why-not."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from scipy import sparse

from features.pairs import FeatureError
from models.assignment import assign_globally, assign_greedily
from models.calibration import Calibrator
from models.solver import SolverError, solve_milp
from models.team import (
    TEAM_FEATURES,
    TeamInstance,
    TeamLimits,
    TeamModel,
    assemble_teams,
    exact_best_team,
    feasible,
    model_scorer,
    shapley_credit,
    team_features,
)
from models.why_not import why_not
from models.win import WinModel


def random_instance(
    rng: np.random.Generator, requirements: int, partners: int, candidate_share: float = 0.6
) -> TeamInstance:
    fit = rng.uniform(0.05, 0.9, (requirements, partners))
    fit[rng.random(fit.shape) > candidate_share] = np.nan
    fit[np.arange(requirements), rng.integers(0, partners, requirements)] = 0.5  # every requirement has one
    deals = rng.poisson(0.7, (partners, partners)).astype(float)
    deals = np.triu(deals, 1) + np.triu(deals, 1).T
    joint = np.stack([deals, np.floor(deals * rng.random(deals.shape))], axis=-1)
    return TeamInstance(
        products=tuple(f"product-{k}" for k in range(requirements)),
        partner_ids=np.array([f"P{u:03d}" for u in range(partners)]),
        fit=fit,
        load_ratio=rng.uniform(0.0, 1.5, partners),
        joint=joint,
    )


def interacting_scorer(instance: TeamInstance, assignment: np.ndarray) -> np.ndarray:
    """Not separable by requirement: joint fit, overload, hand-offs and co-sell history interact."""
    features = team_features(instance, assignment)
    column = {name: features[:, i].astype(np.float64) for i, name in enumerate(TEAM_FEATURES)}
    logit = (
        column["team_log_fit"]
        + 1.5 * column["team_pairs_with_history"]
        - 0.8 * np.maximum(column["team_max_load"] - 1.0, 0.0)
        - 0.3 * column["team_size"]
    )
    return 1.0 / (1.0 + np.exp(-(logit + 2.0)))


@pytest.fixture(scope="module")
def team_model() -> WinModel:
    """A tiny LightGBM on random team features whose label follows the weakest member's fit."""
    rng = np.random.default_rng(0)
    features = rng.random((600, len(TEAM_FEATURES))).astype(np.float32)
    labels = (rng.random(600) < features[:, TEAM_FEATURES.index("team_min_fit")]).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbosity": -1, "seed": 0, "num_threads": 1},
        lgb.Dataset(features, labels),
        num_boost_round=20,
    )
    return WinModel(booster, Calibrator("platt"), TEAM_FEATURES)


def test_optimiser_never_beats_exact_and_is_close() -> None:
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(25):
        instance = random_instance(rng, requirements=int(rng.integers(2, 5)), partners=7)
        limits = TeamLimits(max_members=3)
        found = assemble_teams(instance, interacting_scorer, limits, top_k=3)
        exact = exact_best_team(instance, interacting_scorer, limits)
        assert found[0].win_probability <= exact.win_probability + 1e-12
        assert all(feasible(instance, team.assignment, limits, np.empty(0, dtype=np.int64))[0] for team in found)
        assert [team.win_probability for team in found] == sorted(
            (team.win_probability for team in found), reverse=True
        )
        gaps.append(1.0 - found[0].win_probability / exact.win_probability)
    assert np.mean(gaps) < 0.01


def test_limits_are_respected(team_model: WinModel) -> None:
    instance = random_instance(np.random.default_rng(2), requirements=5, partners=8, candidate_share=1.0)
    limits = TeamLimits(max_members=2, required_partner_ids=("P003",), excluded_partner_ids=("P001", "P002"))
    for team in assemble_teams(instance, model_scorer(team_model), limits, top_k=5):
        members = set(instance.partner_ids[team.assignment].tolist())
        assert len(members) <= 2 and "P003" in members and not members & {"P001", "P002"}


def test_uncovered_requirement_names_it(team_model: WinModel) -> None:
    instance = random_instance(np.random.default_rng(3), requirements=3, partners=5, candidate_share=1.0)
    fit = instance.fit.copy()
    fit[1, :] = np.nan
    fit[1, 4] = 0.6  # only P004 covers product-1, and it is excluded
    blocked = TeamInstance(instance.products, instance.partner_ids, fit, instance.load_ratio, instance.joint)
    with pytest.raises(FeatureError, match="product-1") as raised:
        assemble_teams(blocked, model_scorer(team_model), TeamLimits(excluded_partner_ids=("P004",)))
    assert raised.value.field == "products"


def test_shapley_shares_are_efficient_and_symmetric(team_model: WinModel) -> None:
    instance = random_instance(np.random.default_rng(4), requirements=7, partners=9, candidate_share=1.0)
    scorer = model_scorer(team_model)
    team = assemble_teams(instance, scorer, TeamLimits(max_members=7), top_k=1)[0]
    credit = shapley_credit(instance, scorer, team.assignment)
    assert sum(credit.shares) == pytest.approx(credit.team_value - credit.empty_value, abs=1e-9)
    assert credit.team_value == pytest.approx(team.win_probability)
    assert len(credit.partner_ids) == len(set(team.assignment.tolist()))


def test_solver_status_is_checked() -> None:
    with pytest.raises(SolverError, match="Infeasible"):
        solve_milp(
            np.ones(2),
            np.zeros(2),
            np.ones(2),
            np.ones(2, dtype=bool),
            sparse.csr_matrix([[1.0, 1.0]]),
            np.array([3.0]),
            np.array([np.inf]),
        )


def test_global_assignment_respects_capacity_beats_greedy_and_meets_exposure() -> None:
    rng = np.random.default_rng(5)
    deals, partners = 60, 12
    candidates = np.array([rng.choice(partners, 4, replace=False) for _ in range(deals)])
    probability = rng.uniform(0.1, 0.9, candidates.shape)
    capacity = np.full(partners, 4)
    emerging = np.arange(partners) >= 9
    greedy = assign_greedily(candidates, probability, capacity)
    plan = assign_globally(candidates, probability, capacity)
    exposed = assign_globally(candidates, probability, capacity, emerging, exposure_share=0.2)
    for result in (greedy, plan, exposed):
        assert (result.exposure <= capacity).all()
        assigned = result.partner_rows >= 0
        assert (np.bincount(result.partner_rows[assigned], minlength=partners) == result.exposure).all()
    assert plan.expected_wins >= greedy.expected_wins
    assert exposed.emerging_share(emerging) >= 0.2 - 1e-9
    assert exposed.expected_wins <= plan.expected_wins + 1e-9


def test_why_not_names_the_constraint_or_the_gap(team_model: WinModel) -> None:
    rng = np.random.default_rng(6)
    features = rng.random((8, len(TEAM_FEATURES))).astype(np.float32)
    probability = team_model.predict_win_probability(features)
    ids = np.array([f"P{i}" for i in range(8)])
    region = np.ones(8, dtype=bool)
    region[2] = False
    constraints = [("region", region), ("capacity", np.ones(8, dtype=bool))]
    assert why_not("P2", ids, constraints, probability, features, team_model, top_k=3).removed_by == "region"
    order = [i for i in np.argsort(-probability) if i != 2]
    last = why_not(ids[order[-1]], ids, constraints, probability, features, team_model, top_k=3)
    assert not last.in_top_k and last.compared_with == ids[order[2]]
    assert all(gap.gap > 0 for gap in last.gaps)
    assert why_not(ids[order[0]], ids, constraints, probability, features, team_model, top_k=3).in_top_k
    with pytest.raises(FeatureError):
        why_not("P99", ids, constraints, probability, features, team_model)


@pytest.fixture(scope="module")
def linear_team_model() -> TeamModel:
    """A hand-set team model: the product of fits, a weakest-link bonus, hand-offs cost."""
    coefficients = np.zeros(len(TEAM_FEATURES))
    coefficients[TEAM_FEATURES.index("team_log_fit")] = 1.0
    coefficients[TEAM_FEATURES.index("team_min_fit")] = 2.0
    coefficients[TEAM_FEATURES.index("team_size")] = -0.2
    return TeamModel(
        feature_names=TEAM_FEATURES,
        coefficients=tuple(coefficients.tolist()),
        intercept=1.0,
        reference=tuple(np.full(len(TEAM_FEATURES), 0.5).tolist()),
        calibrator=Calibrator("platt", slope=1.2, intercept=-0.1),
    )


def test_team_model_round_trips_and_explains_exactly(linear_team_model: TeamModel, tmp_path: Path) -> None:
    instance = random_instance(np.random.default_rng(7), requirements=4, partners=6, candidate_share=1.0)
    features = team_features(instance, np.array([[0, 1, 2, 3], [5, 5, 5, 5]]))
    linear_team_model.save(tmp_path)
    loaded = TeamModel.load(tmp_path)
    assert loaded.predict_win_probability(features) == pytest.approx(
        linear_team_model.predict_win_probability(features)
    )
    reference = linear_team_model.raw_score(np.asarray(linear_team_model.reference)[None, :])
    contributions = linear_team_model.contributions(features)
    assert contributions.sum(axis=1) == pytest.approx(linear_team_model.raw_score(features) - reference)
    reasons = linear_team_model.explain(features, top_k=2)
    assert [len(row) for row in reasons] == [2, 2]
    assert reasons[0][0].feature == TEAM_FEATURES[int(np.argmax(np.abs(contributions[0])))]


def test_assembly_with_the_team_model_matches_exhaustive_search(linear_team_model: TeamModel) -> None:
    rng = np.random.default_rng(8)
    scorer = model_scorer(linear_team_model)
    gaps = []
    for _ in range(20):
        instance = random_instance(rng, requirements=int(rng.integers(2, 6)), partners=8)
        limits = TeamLimits(max_members=int(rng.integers(2, 5)))
        found = assemble_teams(instance, scorer, limits, top_k=2)[0].win_probability
        exact = exact_best_team(instance, scorer, limits).win_probability
        assert found <= exact + 1e-12
        gaps.append(1.0 - found / exact)
    assert np.mean(gaps) < 0.01


def test_a_stronger_member_never_lowers_the_team_probability(linear_team_model: TeamModel) -> None:
    instance = random_instance(np.random.default_rng(9), requirements=3, partners=6, candidate_share=1.0)
    team = np.array([[0, 1, 2]])
    stronger = TeamInstance(
        instance.products,
        instance.partner_ids,
        np.where(np.arange(6) == 1, 0.99, instance.fit),
        instance.load_ratio,
        instance.joint,
    )
    scorer = model_scorer(linear_team_model)
    assert scorer(stronger, team)[0] >= scorer(instance, team)[0]
