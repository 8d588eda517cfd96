"""Partner teams for multi-product deals: team features, the team model, assembly and credit.

A deal with K requirements (products) and U candidate partners is a `TeamInstance`: each
candidate's fit for each requirement (the win model on the single-product sub-deal), its load and
the co-sell history of every candidate pair. A team is an assignment (K,) of one candidate per
requirement (a partner may cover several). `team_features` describes any batch of assignments;
the team model is a calibrated LightGBM on them (a `models.win.WinModel` with team wording, saved as
LightGBM text + JSON). Assembly (`assemble_teams`) seeds a search with a MILP on the linearised
objective (sum of log fits, HiGHS) and improves it by beam local search over single-requirement
swaps scored by the team model; `exact_best_team` enumerates every feasible team of small
instances. `shapley_credit` splits a team's probability among its members exactly.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse

from features.pairs import FEATURE_COLUMNS as PAIR_FEATURES
from features.pairs import LOAD_RATIO, DealBatch, FeatureContext, pair_feature_matrix
from features.teams import CoSellHistory, requirement_batch, uncovered_requirement
from models.calibration import Calibrator
from models.solver import solve_milp
from models.win import Reason, WinModel, top_reasons

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

TEAM_COVERAGE = "team_coverage"
TEAM_MIN_FIT = "team_min_fit"
TEAM_MEAN_FIT = "team_mean_fit"
TEAM_LOG_FIT = "team_log_fit"
TEAM_SIZE = "team_size"
TEAM_REQUIREMENTS = "team_requirements"
TEAM_MAX_LOAD = "team_max_load"
TEAM_MEAN_LOAD = "team_mean_load"
TEAM_PAIRS_WITH_HISTORY = "team_pairs_with_history"
TEAM_JOINT_DEALS = "team_joint_deals"
TEAM_JOINT_WIN_RATE = "team_joint_win_rate"
TEAM_FEATURES: tuple[str, ...] = (
    TEAM_COVERAGE,
    TEAM_MIN_FIT,
    TEAM_MEAN_FIT,
    TEAM_LOG_FIT,
    TEAM_SIZE,
    TEAM_REQUIREMENTS,
    TEAM_MAX_LOAD,
    TEAM_MEAN_LOAD,
    TEAM_PAIRS_WITH_HISTORY,
    TEAM_JOINT_DEALS,
    TEAM_JOINT_WIN_RATE,
)
# Sign constraints of the team model's coefficients: fits up, load and hand-offs down, co-sell history up.
TEAM_MONOTONE_DIRECTIONS: dict[str, int] = {
    TEAM_COVERAGE: 1,
    TEAM_MIN_FIT: 1,
    TEAM_MEAN_FIT: 1,
    TEAM_LOG_FIT: 1,
    TEAM_SIZE: -1,
    TEAM_MAX_LOAD: -1,
    TEAM_MEAN_LOAD: -1,
    TEAM_PAIRS_WITH_HISTORY: 1,
    TEAM_JOINT_DEALS: 1,
    TEAM_JOINT_WIN_RATE: 1,
}
TEAM_FEATURE_REASONS: dict[str, tuple[str, str]] = {
    TEAM_COVERAGE: ("every requirement is covered", "requirements are left uncovered"),
    TEAM_MIN_FIT: ("no weak link: every member fits its requirement", "a weak link on one requirement"),
    TEAM_MEAN_FIT: ("members fit their requirements well", "members fit their requirements poorly"),
    TEAM_LOG_FIT: ("strong joint fit across requirements", "weak joint fit across requirements"),
    TEAM_SIZE: ("a team size that suits the deal", "too many hand-offs between members"),
    TEAM_REQUIREMENTS: ("a scope teams like this win", "a broad scope that is hard to win"),
    TEAM_MAX_LOAD: ("every member has spare capacity", "a member is near or over capacity"),
    TEAM_MEAN_LOAD: ("members have spare capacity", "members are busy"),
    TEAM_PAIRS_WITH_HISTORY: ("members have co-sold before", "members have not co-sold before"),
    TEAM_JOINT_DEALS: ("long joint history", "little joint history"),
    TEAM_JOINT_WIN_RATE: ("members won together before", "members lost together before"),
}
TEAM_MODEL_DIR = "team"  # the team model's directory inside a team bundle
TEAM_MODEL_FILE = "team_model.json"
MAX_EXACT_TEAMS = 2_000_000  # exhaustive search refuses larger instances

TeamScorer = Callable[["TeamInstance", IntArray], FloatArray]


@dataclass(frozen=True)
class TeamInstance:
    """One deal's team problem: K requirements, U candidate partners (row u of every array).

    fit: (K, U) win-model probability in [0, 1] of partner u on requirement k alone; NaN where u
        is not a candidate for k. load_ratio: (U,) recent load / declared capacity, >= 0.
    joint: (U, U, 2) symmetric (joint deals, joint wins) of each pair before the deal.
    """

    products: tuple[str, ...]
    partner_ids: npt.NDArray[np.str_]
    fit: FloatArray
    load_ratio: FloatArray
    joint: FloatArray

    def candidates(self, requirement: int) -> IntArray:
        """Candidate rows for one requirement, best fit first."""
        rows = np.flatnonzero(~np.isnan(self.fit[requirement]))
        return rows[np.argsort(-self.fit[requirement, rows], kind="stable")]

    def restricted(self, keep: npt.NDArray[np.bool_]) -> TeamInstance:
        """The same instance with only the (K, U) candidacies where `keep` is true."""
        return TeamInstance(
            self.products, self.partner_ids, np.where(keep, self.fit, np.nan), self.load_ratio, self.joint
        )


@dataclass(frozen=True)
class TeamLimits:
    """Hard limits of a team: at most `max_members` distinct partners, every required partner in
    it, no excluded one. Regions and capacity are eligibility, applied to the candidates."""

    max_members: int = 4
    required_partner_ids: tuple[str, ...] = ()
    excluded_partner_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoredTeam:
    assignment: IntArray  # (K,) candidate row per requirement
    win_probability: float


@functools.cache
def _slot_pairs(slots: int) -> tuple[IntArray, IntArray]:
    """The (first, second) slot indices of every unordered pair of `slots` slots (read-only)."""
    first, second = np.triu_indices(slots, k=1)
    first.flags.writeable = second.flags.writeable = False
    return first, second


def team_features(instance: TeamInstance, assignment: IntArray) -> npt.NDArray[np.float32]:
    """(B, len(TEAM_FEATURES)) float32 features of B teams; assignment (B, K) candidate rows, -1
    for an uncovered requirement (fit 0 there, so coverage, min fit and log fit show it)."""
    assignment = np.atleast_2d(np.asarray(assignment, dtype=np.int64))
    covered = assignment >= 0
    safe = np.where(covered, assignment, 0)
    slot_fit = instance.fit[np.arange(assignment.shape[1]), safe]
    fit = np.where(covered & ~np.isnan(slot_fit), slot_fit, 0.0)
    members = np.sort(np.where(covered, assignment, -1), axis=1)
    distinct = np.where(np.diff(members, axis=1, prepend=-1) != 0, members, -1)
    is_member = distinct >= 0
    member_rows = np.where(is_member, distinct, 0)
    load = instance.load_ratio[member_rows]
    first, second = _slot_pairs(assignment.shape[1])
    real_pair = is_member[:, first] & is_member[:, second]
    joint = instance.joint[member_rows[:, first], member_rows[:, second]]
    size = is_member.sum(axis=1)
    pair_count = np.maximum(real_pair.sum(axis=1), 1)
    deals, wins = np.where(real_pair, joint[..., 0], 0.0), np.where(real_pair, joint[..., 1], 0.0)
    columns = {
        TEAM_COVERAGE: covered.mean(axis=1),
        TEAM_MIN_FIT: fit.min(axis=1),
        TEAM_MEAN_FIT: fit.mean(axis=1),
        TEAM_LOG_FIT: np.log(np.maximum(fit, 1e-6)).sum(axis=1),
        TEAM_SIZE: size,
        TEAM_REQUIREMENTS: np.full(assignment.shape[0], assignment.shape[1]),
        TEAM_MAX_LOAD: np.where(is_member, load, -np.inf).max(axis=1),
        TEAM_MEAN_LOAD: np.where(is_member, load, 0.0).sum(axis=1) / np.maximum(size, 1),
        TEAM_PAIRS_WITH_HISTORY: (real_pair & (deals > 0)).sum(axis=1) / pair_count,
        TEAM_JOINT_DEALS: np.log1p(deals).sum(axis=1) / pair_count,
        TEAM_JOINT_WIN_RATE: np.where(real_pair, (wins + 1.0) / (deals + 2.0), 0.0).sum(axis=1) / pair_count,
    }
    return np.column_stack([np.asarray(columns[name], dtype=np.float32) for name in TEAM_FEATURES])


@dataclass(frozen=True)
class TeamModel:
    """Calibrated team win probability: a logistic model, additive in log-odds over TEAM_FEATURES,
    with the coefficient signs of TEAM_MONOTONE_DIRECTIONS.

    Its structure follows the domain: TEAM_LOG_FIT is the log of the product of the members' fits
    (every requirement must be delivered), the weakest and mean fits bend that product, and load,
    hand-offs and co-sell history adjust it. Unlike trees it extrapolates: the optimiser explores
    teams stronger than any legacy team, where a tree ensemble is flat and ranks them by noise.
    Same face as `WinModel` (predict_win_probability, contributions, explain, save / load).

    coefficients: (F,) log-odds per unit of each feature; reference: (F,) the mean training team,
    against which `contributions` are measured.
    """

    feature_names: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    reference: tuple[float, ...]
    calibrator: Calibrator
    reasons: Mapping[str, tuple[str, str]] = field(default_factory=lambda: TEAM_FEATURE_REASONS)

    def _matrix(self, features: pd.DataFrame | np.ndarray) -> FloatArray:
        if isinstance(features, pd.DataFrame):
            features = features[list(self.feature_names)].to_numpy()
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ValueError(f"expected an (n, {len(self.feature_names)}) feature array, got {features.shape}")
        return np.asarray(features, dtype=np.float64)

    def raw_score(self, features: pd.DataFrame | np.ndarray) -> FloatArray:
        """(n,) uncalibrated log-odds."""
        return np.asarray(self._matrix(features) @ np.asarray(self.coefficients) + self.intercept)

    def predict_win_probability(self, features: pd.DataFrame | np.ndarray) -> FloatArray:
        """(n,) calibrated probability in [0, 1] that the team closes the deal."""
        return np.asarray(self.calibrator.predict(self.raw_score(features)), dtype=np.float64)

    def contributions(self, features: pd.DataFrame | np.ndarray) -> FloatArray:
        """(n, F) log-odds contribution of each feature against the mean training team (exact
        Shapley values of a linear model)."""
        return (self._matrix(features) - np.asarray(self.reference)) * np.asarray(self.coefficients)

    def explain(self, features: pd.DataFrame | np.ndarray, top_k: int = 3) -> list[list[Reason]]:
        """Top `top_k` reasons per row, by the size of their contribution."""
        return top_reasons(self.contributions(features), self.feature_names, self.reasons, top_k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "feature_names": list(self.feature_names),
            "coefficients": list(self.coefficients),
            "intercept": self.intercept,
            "reference": list(self.reference),
            "calibrator": self.calibrator.to_dict(),
        }
        (directory / TEAM_MODEL_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TeamModel:
        payload = json.loads((directory / TEAM_MODEL_FILE).read_text())
        return cls(
            feature_names=tuple(payload["feature_names"]),
            coefficients=tuple(float(value) for value in payload["coefficients"]),
            intercept=float(payload["intercept"]),
            reference=tuple(float(value) for value in payload["reference"]),
            calibrator=Calibrator.from_dict(payload["calibrator"]),
        )


def load_team_model(directory: Path) -> TeamModel:
    """The team model saved (by `TeamModel.save`) under `directory`/TEAM_MODEL_DIR."""
    return TeamModel.load(directory / TEAM_MODEL_DIR)


def model_scorer(team_model: TeamModel | WinModel) -> TeamScorer:
    """Score teams by the calibrated team model."""

    def score(instance: TeamInstance, assignment: IntArray) -> FloatArray:
        return np.asarray(team_model.predict_win_probability(team_features(instance, assignment)), dtype=np.float64)

    return score


def build_instance(
    context: FeatureContext,
    win_model: WinModel,
    history: CoSellHistory,
    deals: DealBatch,
    deal_row: int,
    candidate_rows: Sequence[IntArray],
) -> TeamInstance:
    """The team problem of deal `deal_row` of `deals`: requirement k is product k of the deal (in
    the context's product order) with candidates `candidate_rows[k]` (context partner rows).

    Raises FeatureError naming the first requirement that has no candidate.
    """
    products = np.flatnonzero(deals.product_mask[deal_row])
    if len(candidate_rows) != products.size:
        raise ValueError(f"got {len(candidate_rows)} candidate lists for {products.size} requirements")
    for product, rows in zip(products.tolist(), candidate_rows, strict=True):
        if len(rows) == 0:
            raise uncovered_requirement(context.products[product])
    union = np.unique(np.concatenate([np.asarray(rows, dtype=np.int64) for rows in candidate_rows]))
    k_count, u_count = products.size, union.size
    sub_deals = requirement_batch(deals, np.full(k_count * u_count, deal_row), np.repeat(products, u_count))
    features = pair_feature_matrix(context, sub_deals, np.arange(k_count * u_count), np.tile(union, k_count))
    fit = win_model.predict_win_probability(features).reshape(k_count, u_count)
    is_candidate = np.zeros((k_count, u_count), dtype=bool)
    for k, rows in enumerate(candidate_rows):
        is_candidate[k, np.searchsorted(union, rows)] = True
    first, second = np.triu_indices(u_count, k=1)
    joint = np.zeros((u_count, u_count, 2))
    sums = history.joint(union[first], union[second], np.full(first.size, deals.created_seconds[deal_row]))
    joint[first, second] = sums
    joint[second, first] = sums
    return TeamInstance(
        products=tuple(context.products[p] for p in products),
        partner_ids=context.partner_ids[union],
        fit=np.where(is_candidate, fit, np.nan),
        load_ratio=features[:u_count, PAIR_FEATURES.index(LOAD_RATIO)].astype(np.float64),
        joint=joint,
    )


def apply_limits(instance: TeamInstance, limits: TeamLimits) -> tuple[TeamInstance, IntArray]:
    """Drop excluded partners from the candidates; return the instance and the required rows.

    Raises FeatureError for a requirement left without candidates, ValueError for a required
    partner that is not a candidate of any requirement or more required partners than members.
    """
    excluded = np.isin(instance.partner_ids, np.asarray(limits.excluded_partner_ids, dtype=str))
    limited = instance.restricted(~np.isnan(instance.fit) & ~excluded[None, :])
    for k, product in enumerate(limited.products):
        if limited.candidates(k).size == 0:
            raise uncovered_requirement(product)
    required = np.concatenate(
        [np.flatnonzero(instance.partner_ids == partner)[:1] for partner in limits.required_partner_ids]
        + [np.empty(0, dtype=np.int64)]
    ).astype(np.int64)
    if required.size != len(limits.required_partner_ids) or np.isnan(limited.fit[:, required]).all(axis=0).any():
        raise ValueError("every required partner must be an eligible candidate for some requirement")
    if required.size > limits.max_members:
        raise ValueError(f"{required.size} required partners exceed max_members = {limits.max_members}")
    return limited, required.astype(np.int64)


def feasible(instance: TeamInstance, assignment: IntArray, limits: TeamLimits, required: IntArray) -> np.ndarray:
    """(B,) bool: every requirement covered by a candidate, at most max_members distinct members,
    every required row among them."""
    assignment = np.atleast_2d(assignment)
    safe = np.maximum(assignment, 0)
    covered = (assignment >= 0) & ~np.isnan(instance.fit[np.arange(assignment.shape[1]), safe])
    members = np.sort(assignment, axis=1)
    size = (np.diff(members, axis=1) != 0).sum(axis=1) + 1
    has_required = np.ones(assignment.shape[0], dtype=bool)
    for row in required.tolist():
        has_required &= (assignment == row).any(axis=1)
    return np.asarray(covered.all(axis=1) & (size <= limits.max_members) & has_required)


def milp_seed(instance: TeamInstance, limits: TeamLimits, required: IntArray) -> IntArray:
    """(K,) the team maximising the sum of log fits under the limits (HiGHS MILP): x[k, u] picks
    u for k, y[u] marks members; sum_u x[k, u] = 1, x[k, u] <= y[u], sum y <= max_members."""
    k_rows, u_cols = np.nonzero(~np.isnan(instance.fit))
    n_x, u_count = k_rows.size, instance.partner_ids.size
    k_count = len(instance.products)
    cost = np.concatenate((np.log(np.maximum(instance.fit[k_rows, u_cols], 1e-6)), np.zeros(u_count)))
    lower = np.zeros(n_x + u_count)
    lower[n_x + required] = 1.0
    edge = np.arange(n_x)
    required_sorted = np.sort(required)
    on_required = np.isin(u_cols, required_sorted)
    rows = sparse.vstack(
        [
            sparse.csr_matrix((np.ones(n_x), (k_rows, edge)), shape=(k_count, n_x + u_count)),
            sparse.csr_matrix(
                (
                    np.concatenate((np.ones(n_x), -np.ones(n_x))),
                    (np.tile(edge, 2), np.concatenate((edge, n_x + u_cols))),
                ),
                shape=(n_x, n_x + u_count),
            ),
            sparse.csr_matrix(np.concatenate((np.zeros(n_x), np.ones(u_count)))[None, :]),
            # A required member covers at least one requirement (y[u] = 1 alone would not put it in the team).
            sparse.csr_matrix(
                (
                    np.ones(on_required.sum()),
                    (np.searchsorted(required_sorted, u_cols[on_required]), edge[on_required]),
                ),
                shape=(required.size, n_x + u_count),
            ),
        ]
    )
    row_lower = np.concatenate((np.ones(k_count), np.full(n_x, -np.inf), [-np.inf], np.ones(required.size)))
    row_upper = np.concatenate((np.ones(k_count), np.zeros(n_x), [limits.max_members], np.full(required.size, np.inf)))
    solution = solve_milp(
        cost,
        lower,
        np.ones(n_x + u_count),
        np.ones(n_x + u_count, dtype=bool),
        rows,
        row_lower,
        row_upper,
    )
    assignment = np.full(k_count, -1, dtype=np.int64)
    chosen = solution.values[:n_x] > 0.5
    assignment[k_rows[chosen]] = u_cols[chosen]
    return assignment


def assemble_teams(
    instance: TeamInstance,
    scorer: TeamScorer,
    limits: TeamLimits = TeamLimits(),
    top_k: int = 3,
    beam_width: int = 4,
    max_rounds: int = 25,
    pair_candidates: int = 4,
) -> list[ScoredTeam]:
    """Up to `top_k` distinct feasible teams, best first, by `scorer`.

    Beam local search: the beam starts at the MILP seed (`milp_seed` on `_seed_candidacies`, or
    each requirement's best candidate when no limit can bind); each round scores, in one scorer
    call, the unseen feasible neighbours of every beam team (`_neighbours`: one requirement to any
    candidate, a member replaced everywhere, two requirements at once among their
    `pair_candidates` best) and keeps the best `beam_width` teams seen; it stops when the best
    score stops improving. Every returned team is feasible, so its score never exceeds
    `exact_best_team`'s.
    """
    limited, required = apply_limits(instance, limits)
    candidates = [limited.candidates(k) for k in range(len(limited.products))]
    if required.size == 0 and limits.max_members >= len(candidates):
        seed = np.array([rows[0] for rows in candidates], dtype=np.int64)  # the MILP's optimum when no limit binds
    else:
        seed = milp_seed(limited.restricted(_seed_candidacies(limited, candidates, required)), limits, required)
    moves = _pair_moves(candidates, pair_candidates)
    teams, scores = seed[None, :], scorer(limited, seed[None, :])
    keys = _team_keys(teams, limited.partner_ids.size)
    beam, best = teams, float(scores[0])
    for _ in range(max_rounds):
        batch = np.concatenate([_neighbours(team, candidates, moves) for team in beam])
        batch_keys, first = np.unique(_team_keys(batch, limited.partner_ids.size), return_index=True)
        fresh = ~np.isin(batch_keys, keys)
        batch, batch_keys = batch[first[fresh]], batch_keys[fresh]
        allowed = feasible(limited, batch, limits, required)
        batch, batch_keys = batch[allowed], batch_keys[allowed]
        if batch.size:
            teams = np.concatenate((teams, batch))
            scores = np.concatenate((scores, scorer(limited, batch)))
            keys = np.concatenate((keys, batch_keys))
        order = np.argsort(-scores, kind="stable")
        beam = teams[order[:beam_width]]
        if scores[order[0]] <= best + 1e-12:
            break
        best = float(scores[order[0]])
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [ScoredTeam(teams[row].copy(), float(scores[row])) for row in order.tolist()]


def _seed_candidacies(
    instance: TeamInstance, candidates: Sequence[IntArray], required: IntArray
) -> npt.NDArray[np.bool_]:
    """(K, U) bool: the best candidate of each requirement, and every candidacy of a partner that
    is required or a candidate of several requirements. The MILP optimum (and feasibility) keeps:
    a member covering one requirement only, not required, can be swapped for that requirement's
    best candidate without adding a member or lowering the sum of log fits."""
    keep = np.zeros(instance.fit.shape, dtype=bool)
    for k, rows in enumerate(candidates):
        keep[k, rows[0]] = True
    is_candidate = ~np.isnan(instance.fit)
    shared = is_candidate.sum(axis=0) >= 2
    shared[required] = True
    return keep | (is_candidate & shared[None, :])


def _team_keys(teams: IntArray, candidate_count: int) -> IntArray:
    """(B,) one integer per distinct (B, K) team: its rows as digits in base U + 1 (exact while
    (U + 1)^K < 2^63, else a 64-bit hash of the row's bytes, collisions vanishingly rare)."""
    base = candidate_count + 1
    if teams.shape[1] * math.log2(base) < 63:
        return np.asarray((teams + 1) @ (base ** np.arange(teams.shape[1], dtype=np.int64)), dtype=np.int64)
    return np.asarray(
        pd.util.hash_array(np.ascontiguousarray(teams).view(f"V{8 * teams.shape[1]}").ravel()), dtype=np.int64
    )


@dataclass(frozen=True)
class _PairMoves:
    """Two requirements reassigned at once: (M,) first and second requirement and their new rows."""

    first: IntArray
    second: IntArray
    first_rows: IntArray
    second_rows: IntArray


def _pair_moves(candidates: Sequence[IntArray], pair_candidates: int) -> _PairMoves:
    """Every pair of requirements, each to one of its `pair_candidates` best candidates."""
    parts: list[tuple[IntArray, IntArray, IntArray, IntArray]] = []
    for first, second in itertools.combinations(range(len(candidates)), 2):
        grid = np.array(np.meshgrid(candidates[first][:pair_candidates], candidates[second][:pair_candidates]))
        rows_first, rows_second = grid[0].ravel(), grid[1].ravel()
        parts.append((np.full(rows_first.size, first), np.full(rows_first.size, second), rows_first, rows_second))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return _PairMoves(empty, empty, empty, empty)
    first_k, second_k, first_rows, second_rows = (
        np.concatenate(column).astype(np.int64) for column in zip(*parts, strict=True)
    )
    return _PairMoves(first_k, second_k, first_rows, second_rows)


def _neighbours(team: IntArray, candidates: Sequence[IntArray], moves: _PairMoves) -> IntArray:
    """(moves, K) teams one move away from `team`: a requirement reassigned to any of its
    candidates; a member replaced in all its requirements by a partner that is a candidate for
    each of them; two requirements reassigned together (`moves`)."""
    sizes = [rows.size for rows in candidates]
    single = np.repeat(team[None, :], sum(sizes), axis=0)
    single[np.arange(single.shape[0]), np.repeat(np.arange(team.size), sizes)] = np.concatenate(candidates)
    paired = np.repeat(team[None, :], moves.first.size, axis=0)
    paired[np.arange(moves.first.size), moves.first] = moves.first_rows
    paired[np.arange(moves.first.size), moves.second] = moves.second_rows
    replaced = []
    for member in np.unique(team).tolist():
        slots = np.flatnonzero(team == member)
        if slots.size < 2:
            continue  # a member of one requirement: the single moves already replace it
        shared = candidates[slots[0]]
        for slot in slots[1:].tolist():
            shared = np.intersect1d(shared, candidates[slot])
        moved = np.repeat(team[None, :], shared.size, axis=0)
        moved[:, slots] = shared[:, None]
        replaced.append(moved)
    return np.concatenate([single, paired, *replaced]).astype(np.int64)


def exact_best_team(
    instance: TeamInstance, scorer: TeamScorer, limits: TeamLimits = TeamLimits(), batch_size: int = 50_000
) -> ScoredTeam:
    """The best feasible team by exhaustive enumeration (evaluation and small instances only).
    Raises ValueError above MAX_EXACT_TEAMS combinations."""
    limited, required = apply_limits(instance, limits)
    candidates = [limited.candidates(k) for k in range(len(limited.products))]
    total = math.prod(len(rows) for rows in candidates)
    if total > MAX_EXACT_TEAMS:
        raise ValueError(f"{total} combinations exceed the exhaustive limit of {MAX_EXACT_TEAMS}")
    best = ScoredTeam(np.full(len(candidates), -1, dtype=np.int64), -np.inf)
    combinations = itertools.product(*(rows.tolist() for rows in candidates))
    while chunk := list(itertools.islice(combinations, batch_size)):
        batch = np.array(chunk, dtype=np.int64)
        batch = batch[feasible(limited, batch, limits, required)]
        if batch.size:
            scores = scorer(limited, batch)
            top = int(np.argmax(scores))
            if scores[top] > best.win_probability:
                best = ScoredTeam(batch[top], float(scores[top]))
    return best


def replacement_team(instance: TeamInstance) -> IntArray:
    """(K,) the median-fit candidate of each requirement: the "typical available partner" that
    stands in for members outside a coalition in `shapley_credit`."""
    return np.array(
        [rows[(rows.size - 1) // 2] for rows in (instance.candidates(k) for k in range(len(instance.products)))],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class Credit:
    partner_ids: tuple[str, ...]  # the team's distinct members
    shares: tuple[float, ...]  # exact Shapley values, summing to team_value - empty_value
    team_value: float  # the team's probability
    empty_value: float  # the replacement team's probability (nobody from the team)


def shapley_credit(instance: TeamInstance, scorer: TeamScorer, assignment: IntArray) -> Credit:
    """Exact Shapley value of each member for the team's probability (2^m coalitions, m <= 7).

    The value of a coalition S is the probability of the team in which requirements covered by
    members of S keep them and every other requirement goes to its `replacement_team` partner: a
    coalition that does not cover every requirement is completed with typical available partners,
    never scored as uncovered. Efficiency: the shares sum to v(team) - v(empty coalition).
    """
    members = np.unique(assignment)
    m = members.size
    masks = (np.arange(1 << m)[:, None] >> np.arange(m)[None, :]) & 1  # (2^m, m) coalition membership
    stand_in = replacement_team(instance)
    in_coalition = masks[:, np.searchsorted(members, assignment)].astype(bool)  # (2^m, K)
    values = scorer(instance, np.where(in_coalition, assignment[None, :], stand_in[None, :]))
    sizes = masks.sum(axis=1)
    shares = np.zeros(m)
    for player in range(m):
        without = np.flatnonzero(masks[:, player] == 0)
        weight = np.array([math.factorial(s) * math.factorial(m - s - 1) for s in sizes[without]]) / math.factorial(m)
        shares[player] = float((weight * (values[without | (1 << player)] - values[without])).sum())
    return Credit(
        partner_ids=tuple(str(instance.partner_ids[row]) for row in members),
        shares=tuple(float(share) for share in shares),
        team_value=float(values[-1]),
        empty_value=float(values[0]),
    )


@dataclass(frozen=True)
class TeamMember:
    partner_id: str
    covers: tuple[str, ...]
    fit: tuple[float, ...]  # win-model fit on each covered requirement
    credit: float  # Shapley share of the team probability


@dataclass(frozen=True)
class TeamProposal:
    members: tuple[TeamMember, ...]
    win_probability: float
    cohesion: float  # share of member pairs that co-sold before, in [0, 1]
    baseline_probability: float  # the replacement team's probability (credit sums to the difference)
    reasons: tuple[Reason, ...]


def describe_team(instance: TeamInstance, team_model: TeamModel | WinModel, team: ScoredTeam) -> TeamProposal:
    """Members with what they cover and their credit, cohesion and the model's top reasons."""
    credit = shapley_credit(instance, model_scorer(team_model), team.assignment)
    features = team_features(instance, team.assignment)
    members = []
    for partner_id, share in zip(credit.partner_ids, credit.shares, strict=True):
        row = int(np.flatnonzero(instance.partner_ids == partner_id)[0])
        covered = np.flatnonzero(team.assignment == row)
        members.append(
            TeamMember(
                partner_id=partner_id,
                covers=tuple(instance.products[k] for k in covered),
                fit=tuple(float(instance.fit[k, row]) for k in covered),
                credit=share,
            )
        )
    return TeamProposal(
        members=tuple(members),
        win_probability=team.win_probability,
        cohesion=float(features[0, TEAM_FEATURES.index(TEAM_PAIRS_WITH_HISTORY)]),
        baseline_probability=credit.empty_value,
        reasons=tuple(team_model.explain(features)[0]),
    )
