"""The true win model of a synthetic ecosystem, and the oracle that applies it to any candidates.

The true model lives in one place, `true_win_logit` (solo attempts) with `true_team_probability`
(co-sell pairs) and `true_team_deal_probability` (team deals: several requirements, each covered by
one member, won or lost as a team); `attempt_probability` combines them for the generator and for
`oracle_probability`, which scores any (deal, candidate partner) slate so that evaluations can
compare a ranking with the oracle's. `team_deal_probability` scores any candidate team of any deal.

Load, precisely: the load ratio of partner p for a deal created at t is the number of outcomes rows
of p whose deal was created in [t - schema.LOAD_WINDOW, t) (`features.pairs.recent_attempts`),
divided by p's true capacity (deals per load window). Tenure is t - joined_at in days.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features import pairs, schema
from features.synthetic.truth import BoolArray, FloatArray, GroundTruth, IntArray, PartnerIds

NEW_PARTNER_TENURE_DAYS = 90.0  # e-folding tenure of the new-partner penalty


def true_win_logit(
    truth: GroundTruth,
    partner_positions: IntArray,
    deal_products: BoolArray,
    deal_region_index: IntArray,
    amount: FloatArray,
    created_seconds: IntArray,
    load_ratio: FloatArray,
    tenure_days: FloatArray,
) -> FloatArray:
    """(m,) true win logit of m solo (deal, partner) attempts.

    logit = intercept + skill * mean(product_skill over the deal's products)
            + region * region_skill[deal region] + certification * coverage
            - size_fit * |log(amount / sweet spot)| - overload * max(0, load_ratio - 1)
            - new_partner * exp(-max(tenure_days, 0) / 90) - disengaged * [inside an episode]

    partner_positions: (m,) rows of `truth`; deal_products: (m, P) bool, >= 1 per row;
    deal_region_index: (m,) index into schema.REGIONS; amount: (m,) USD > 0; created_seconds: (m,)
    deal creation times in seconds since 1970; load_ratio: (m,) >= 0 (see the module docstring);
    tenure_days: (m,). Coverage is the mean certification level over the deal's products divided
    by 3, in [0, 1].
    """
    coefficients = truth.coefficients
    products = np.asarray(deal_products, dtype=bool)
    product_count = products.sum(axis=1)
    if (product_count == 0).any():
        raise ValueError("every deal needs at least one product")
    skill = (truth.product_skill[partner_positions] * products).sum(axis=1, dtype=np.float64) / product_count
    coverage = (truth.certification_levels[partner_positions] * products).sum(axis=1, dtype=np.float64) / (
        product_count * schema.MAX_CERT_LEVEL
    )
    region = truth.region_skill[partner_positions, deal_region_index].astype(np.float64)
    size_misfit = np.abs(np.log(np.asarray(amount, dtype=np.float64) / truth.size_sweet_spot[partner_positions]))
    overload = np.maximum(np.asarray(load_ratio, dtype=np.float64) - 1.0, 0.0)
    newness = np.exp(-np.maximum(np.asarray(tenure_days, dtype=np.float64), 0.0) / NEW_PARTNER_TENURE_DAYS)
    disengaged = truth.episodes.inside(partner_positions, created_seconds)
    return (
        coefficients.intercept
        + coefficients.skill * skill
        + coefficients.region * region
        + coefficients.certification * coverage
        - coefficients.size_fit * size_misfit
        - coefficients.overload * overload
        - coefficients.new_partner * newness
        - coefficients.disengaged * disengaged
    )


def true_team_probability(
    truth: GroundTruth, solo_probability_a: FloatArray, solo_probability_b: FloatArray, affinity: FloatArray
) -> FloatArray:
    """(m,) true win probability of co-sell pairs in (0, 1).

    logit(1 - (1 - p_a)(1 - p_b)) + affinity_coefficient * affinity: the chance that either
    partner alone would win, shifted by how well the pair works together.
    """
    log_both_lose = np.log1p(-solo_probability_a) + np.log1p(-solo_probability_b)
    either_logit = np.log(-np.expm1(log_both_lose)) - log_both_lose
    return _sigmoid(either_logit + truth.coefficients.affinity * affinity)


def true_team_deal_probability(
    truth: GroundTruth, required: BoolArray, member_positions: IntArray, slot_logits: FloatArray
) -> FloatArray:
    """(B,) true win probability of B teams on team deals, in [0, 1); 0 when a requirement is uncovered.

    Each requirement r is delivered with q_r = sigmoid(solo logit of its member on r alone +
    requirement_shift); the deal is won with
        sigmoid(logit(prod_r q_r) + affinity * mean pair affinity of the distinct members
                - coordination * (distinct members - 1)),
    so the weakest member, every requirement, how well the members work together and (through the
    solo logits) their load all matter.

    required: (B, P) bool, the deal's products (columns schema.PRODUCTS); member_positions: (B, P)
    rows of `truth` covering each product, -1 where nobody does (ignored where not required);
    slot_logits: (B, P) `true_win_logit` of that member on that single product (ignored elsewhere).
    """
    coefficients = truth.team_coefficients
    covered = required & (member_positions >= 0)
    complete = (covered == required).all(axis=1)
    log_delivered = np.where(
        covered,
        -np.logaddexp(0.0, -(np.nan_to_num(slot_logits, nan=0.0) + coefficients.requirement_shift)),
        0.0,
    ).sum(axis=1)
    log_delivered = np.minimum(log_delivered, -1e-12)  # a team with no requirement is not a team
    all_logit = log_delivered - np.log(-np.expm1(log_delivered))
    members = np.sort(np.where(covered, member_positions, -1), axis=1)
    distinct = np.where(np.diff(members, axis=1, prepend=-1) != 0, members, -1)
    first, second = np.triu_indices(distinct.shape[1], k=1)
    pair_a, pair_b = distinct[:, first], distinct[:, second]
    real_pair = (pair_a >= 0) & (pair_b >= 0)
    affinity = np.zeros(pair_a.shape)
    affinity[real_pair] = truth.pair_affinity(pair_a[real_pair], pair_b[real_pair])
    mean_affinity = affinity.sum(axis=1) / np.maximum(real_pair.sum(axis=1), 1)
    size = (distinct >= 0).sum(axis=1)
    probability = _sigmoid(
        all_logit + coefficients.affinity * mean_affinity - coefficients.coordination * np.maximum(size - 1, 0)
    )
    return np.where(complete, probability, 0.0)


def team_slot_logits(
    truth: GroundTruth,
    member_positions: IntArray,
    deal_region_index: IntArray,
    amount: FloatArray,
    created_seconds: IntArray,
    load_ratio: FloatArray,
    tenure_days: FloatArray,
) -> FloatArray:
    """(B, P) solo logit of each (team, product) slot's member on that single product; NaN where
    the slot is empty (member -1). Per-team arrays are (B,), load_ratio and tenure_days (B, P)."""
    team, product = np.nonzero(member_positions >= 0)
    one_product = np.zeros((team.size, len(schema.PRODUCTS)), dtype=bool)
    one_product[np.arange(team.size), product] = True
    logits = np.full(member_positions.shape, np.nan)
    logits[team, product] = true_win_logit(
        truth,
        member_positions[team, product],
        one_product,
        deal_region_index[team],
        amount[team],
        created_seconds[team],
        load_ratio[team, product],
        tenure_days[team, product],
    )
    return logits


def attempt_probability(
    truth: GroundTruth,
    load_history: pairs.EventSums,
    joined_seconds: IntArray,
    partner_positions: IntArray,
    deal_positions: IntArray,
    deal_seconds: IntArray,
    deal_products: BoolArray,
    deal_region: IntArray,
    deal_amount: FloatArray,
    team_codes: IntArray,
    covers: BoolArray | None = None,
) -> FloatArray:
    """(m,) true probability of attempts (partner_positions[i] on deal deal_positions[i]).

    load_history: `load_events` of the recorded attempts; joined_seconds: (n,) per row of `truth`.
    Per-deal arrays are indexed by `deal_positions`; `team_codes` (m,) pairs rows into teams
    (-1 solo, or empty for all solo). `covers` (m, P) bool marks, on team deals, the products each
    member covers: teams with covering rows follow `true_team_deal_probability`, the other teams
    are co-sell pairs. The generator and `oracle_probability` both end here.
    """
    seconds = deal_seconds[deal_positions]
    load_ratio = (
        pairs.recent_attempts(load_history, partner_positions, seconds) / truth.true_capacity[partner_positions]
    )
    solo = _sigmoid(
        true_win_logit(
            truth,
            partner_positions,
            deal_products[deal_positions],
            deal_region[deal_positions],
            deal_amount[deal_positions],
            seconds,
            load_ratio,
            (seconds - joined_seconds[partner_positions]) / pairs.SECONDS_PER_DAY,
        )
    )
    probability = solo.copy()
    if team_codes.size == 0:
        return probability
    team_deal_rows = np.zeros(solo.shape, dtype=bool)
    if covers is not None and covers.size:
        team_deal_rows = (team_codes >= 0) & covers.any(axis=1)
        probability[team_deal_rows] = _team_deal_rows_probability(
            truth,
            team_codes[team_deal_rows],
            partner_positions[team_deal_rows],
            deal_positions[team_deal_rows],
            covers[team_deal_rows],
            deal_products,
            deal_region,
            deal_amount,
            deal_seconds,
            load_ratio[team_deal_rows],
            (seconds - joined_seconds[partner_positions])[team_deal_rows] / pairs.SECONDS_PER_DAY,
        )
    in_team = np.flatnonzero((team_codes >= 0) & ~team_deal_rows)
    if in_team.size == 0:
        return probability
    rows = in_team[np.argsort(team_codes[in_team], kind="stable")]
    first, second = rows[0::2], rows[1::2]
    if (
        rows.size % 2
        or not np.array_equal(team_codes[first], team_codes[second])
        or np.any(np.diff(team_codes[first]) == 0)
        or not np.array_equal(deal_positions[first], deal_positions[second])
    ):
        raise ValueError("a co-sell team must be exactly two rows of one deal")
    team = true_team_probability(
        truth, solo[first], solo[second], truth.pair_affinity(partner_positions[first], partner_positions[second])
    )
    probability[first] = team
    probability[second] = team
    return probability


def _team_deal_rows_probability(
    truth: GroundTruth,
    team_codes: IntArray,
    partner_positions: IntArray,
    deal_positions: IntArray,
    covers: BoolArray,
    deal_products: BoolArray,
    deal_region: IntArray,
    deal_amount: FloatArray,
    deal_seconds: IntArray,
    load_ratio: FloatArray,
    tenure_days: FloatArray,
) -> FloatArray:
    """(k,) the team probability of each team-deal row (all rows of one team share it)."""
    teams, team_of_row = np.unique(team_codes, return_inverse=True)
    team_deal = np.zeros(teams.size, dtype=np.int64)
    team_deal[team_of_row] = deal_positions
    shape = (teams.size, len(schema.PRODUCTS))
    members = np.full(shape, -1, dtype=np.int64)
    slot_load, slot_tenure = np.zeros(shape), np.zeros(shape)
    row, product = np.nonzero(covers)
    members[team_of_row[row], product] = partner_positions[row]
    slot_load[team_of_row[row], product] = load_ratio[row]
    slot_tenure[team_of_row[row], product] = tenure_days[row]
    logits = team_slot_logits(
        truth,
        members,
        deal_region[team_deal],
        deal_amount[team_deal],
        deal_seconds[team_deal],
        slot_load,
        slot_tenure,
    )
    team_probability = true_team_deal_probability(truth, deal_products[team_deal], members, logits)
    return team_probability[team_of_row]


def team_deal_probability(
    truth: GroundTruth,
    ecosystem: schema.Ecosystem,
    deal_rows: pd.DataFrame,
    deal_positions: IntArray,
    member_ids: np.ndarray,
) -> FloatArray:
    """(B,) true win probability of any B candidate teams, each on a deal of `deal_rows`, in [0, 1).

    deal_rows: deals (DEAL_ID, CREATED_AT, DEAL_REGION, DEAL_PRODUCTS, AMOUNT), historical or new;
    deal_positions: (B,) row of `deal_rows` each team works; member_ids: (B, P) partner id covering
    each product (columns schema.PRODUCTS), "" where nobody does. A required product nobody covers
    gives 0. Load ratios and tenure are as in `oracle_probability` (the recorded history).
    """
    member_ids = np.asarray(member_ids, dtype=object)
    filled = member_ids != ""
    members = np.full(member_ids.shape, -1, dtype=np.int64)
    members[filled] = truth.positions(member_ids[filled])
    joined_seconds = np.empty(truth.partner_ids.size, dtype=np.int64)
    joined_seconds[truth.positions(ecosystem.partners[schema.PARTNER_ID])] = pairs.to_seconds(
        ecosystem.partners[schema.JOINED_AT]
    )
    seconds = pairs.to_seconds(deal_rows[schema.CREATED_AT])[deal_positions]
    team, product = np.nonzero(filled)
    load_ratio, tenure_days = np.zeros(members.shape), np.zeros(members.shape)
    positions = members[team, product]
    load_ratio[team, product] = (
        pairs.recent_attempts(_recorded_load(ecosystem, truth.partner_index), positions, seconds[team])
        / truth.true_capacity[positions]
    )
    tenure_days[team, product] = (seconds[team] - joined_seconds[positions]) / pairs.SECONDS_PER_DAY
    logits = team_slot_logits(
        truth,
        members,
        pairs.positions(deal_rows[schema.DEAL_REGION], pd.Index(schema.REGIONS), schema.DEAL_REGION)[deal_positions],
        deal_rows[schema.AMOUNT].to_numpy(dtype=np.float64)[deal_positions],
        seconds,
        load_ratio,
        tenure_days,
    )
    required = pairs.product_mask(deal_rows[schema.DEAL_PRODUCTS], schema.PRODUCTS)[deal_positions]
    return true_team_deal_probability(truth, required, members, logits)


def load_events(partner_positions: IntArray, created_seconds: IntArray) -> pairs.EventIndex:
    """The load history: one event per attempt, keyed by partner position, at its deal's creation."""
    return pairs.EventIndex.build(partner_positions, created_seconds, np.ones(partner_positions.size))


def oracle_probability(
    truth: GroundTruth,
    ecosystem: schema.Ecosystem,
    deal_rows: pd.DataFrame,
    candidates: pd.DataFrame | Sequence[Sequence[str]] | None = None,
) -> FloatArray:
    """True win probability of arbitrary (deal, partner) candidates, in (0, 1).

    deal_rows: deals with DEAL_ID (unique), CREATED_AT, DEAL_REGION, DEAL_PRODUCTS and AMOUNT;
        historical or new. candidates: either a pairs frame (DEAL_ID, PARTNER_ID, optional
        TEAM_ID whose non-empty values join exactly two rows of one deal into a co-sell team) or
        one sequence of partner ids per row of `deal_rows` (all solo). A COVERS_PRODUCT column marks
        team-deal rows (`true_team_deal_probability`, one team per TEAM_ID). Shorthand for pairs on the
        ecosystem's own deals: `oracle_probability(truth, ecosystem, pairs)`.
    Returns (m,) float64 aligned with the pairs frame rows, or with the concatenated slates.

    Load ratios count the partner's outcomes rows in `ecosystem` created in the load window before
    created_at (the recorded history, not a hypothetical re-routing); tenure comes from the
    partners table. On `ecosystem.outcomes` itself this reproduces `truth.outcome_probability`.
    Unknown deal, partner, region or product values raise pairs.FeatureError.
    """
    if candidates is None:
        deal_rows, candidates = ecosystem.deals, deal_rows
    if not deal_rows[schema.DEAL_ID].is_unique:
        raise ValueError("deal_rows must have unique deal ids")
    if isinstance(candidates, pd.DataFrame):
        deal_index = pd.Index(deal_rows[schema.DEAL_ID])
        deal_positions = pairs.positions(candidates[schema.DEAL_ID], deal_index, schema.DEAL_ID)
        partner_ids = candidates[schema.PARTNER_ID].to_numpy(dtype=object)
        team_codes = _team_codes(candidates.get(schema.TEAM_ID))
        covers = _covers(candidates.get(schema.COVERS_PRODUCT))
    else:
        if len(candidates) != len(deal_rows):
            raise ValueError(f"got {len(candidates)} slates for {len(deal_rows)} deals")
        sizes = np.array([len(slate) for slate in candidates], dtype=np.int64)
        deal_positions = np.repeat(np.arange(len(deal_rows), dtype=np.int64), sizes)
        partner_ids = np.array([partner for slate in candidates for partner in slate], dtype=object)
        team_codes = np.full(partner_ids.size, -1, dtype=np.int64)
        covers = None

    joined_seconds = np.empty(truth.partner_ids.size, dtype=np.int64)
    joined_seconds[truth.positions(ecosystem.partners[schema.PARTNER_ID])] = pairs.to_seconds(
        ecosystem.partners[schema.JOINED_AT]
    )
    return attempt_probability(
        truth,
        _recorded_load(ecosystem, truth.partner_index),
        joined_seconds,
        truth.positions(partner_ids),
        deal_positions,
        pairs.to_seconds(deal_rows[schema.CREATED_AT]),
        pairs.product_mask(deal_rows[schema.DEAL_PRODUCTS], schema.PRODUCTS),
        pairs.positions(deal_rows[schema.DEAL_REGION], pd.Index(schema.REGIONS), schema.DEAL_REGION),
        deal_rows[schema.AMOUNT].to_numpy(dtype=np.float64),
        team_codes,
        covers,
    )


def recent_attempt_counts(ecosystem: schema.Ecosystem, partner_ids: PartnerIds, created_at: pd.Series) -> IntArray:
    """(m,) int64: outcomes rows of each partner whose deal was created in [created_at - schema.LOAD_WINDOW,
    created_at).

    The numerator of the load ratio; `created_at` is a datetime64 column aligned with `partner_ids`.
    """
    partner_index = pd.Index(ecosystem.partners[schema.PARTNER_ID])
    counts = pairs.recent_attempts(
        _recorded_load(ecosystem, partner_index),
        pairs.positions(partner_ids, partner_index, schema.PARTNER_ID),
        pairs.to_seconds(created_at),
    )
    return counts.astype(np.int64)


def _sigmoid(logit: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-logit))


def _team_codes(team_ids: pd.Series | None) -> IntArray:
    """(m,) int64 team code per row, -1 for solo rows (missing or empty team id)."""
    if team_ids is None:
        return np.empty(0, dtype=np.int64)
    values = team_ids.fillna("").to_numpy(dtype=object)
    codes, _ = pd.factorize(values)
    return np.where(values == "", -1, codes).astype(np.int64)


def _covers(cells: pd.Series | None) -> BoolArray | None:
    """(m, P) bool of the products each row covers (COVERS_PRODUCT cells), None without the column."""
    if cells is None:
        return None
    values = cells.fillna("").astype(str)
    mask = np.zeros((len(values), len(schema.PRODUCTS)), dtype=bool)
    listed = values.ne("").to_numpy()
    if listed.any():
        mask[listed] = pairs.product_mask(values[listed], schema.PRODUCTS)
    return mask


def _recorded_load(ecosystem: schema.Ecosystem, partner_index: pd.Index) -> pairs.EventIndex:
    """`load_events` of every outcomes row, partners as positions in `partner_index`."""
    outcomes, deal_index = ecosystem.outcomes, pd.Index(ecosystem.deals[schema.DEAL_ID])
    deal_positions = pairs.positions(outcomes[schema.DEAL_ID], deal_index, schema.DEAL_ID)
    return load_events(
        pairs.positions(outcomes[schema.PARTNER_ID], partner_index, schema.PARTNER_ID),
        pairs.to_seconds(ecosystem.deals[schema.CREATED_AT])[deal_positions],
    )
