"""The request-time stages of routing, pure functions over the immutable `RoutingState`:

    retrieve -> constrain (-> top_up) -> featurise -> score -> rank -> explain
                                                        \\-> resolve_channel_conflict

Partners are "rows" of the state's feature context. The protected partner (the one that registered
the deal, unless overridden) travels beside the candidates in its own field, never among them: it
is scored and kept at rank 1 whatever the constraints say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.routing.request import ParsedRequest, RoutingConflictError
from serving.routing.state import RoutingState, single_deal, single_deal_features
from serving.schemas import (
    REASONS_PER_PARTNER,
    CandidateSource,
    ChannelConflict,
    ConstraintReport,
    RankedPartner,
    Reason,
)


@dataclass(frozen=True)
class RetrievedCandidates:
    """Candidate rows before the constraints, and where they came from."""

    source: CandidateSource
    rows: np.ndarray  # (k,) int64 distinct rows
    text_neighbour_rows: np.ndarray  # (t,) int64: the requirement text's FAISS neighbours (retrieval only)
    history_shortlist_rows: np.ndarray  # (s,) int64: strongest on history (retrieval only)


@dataclass(frozen=True)
class EligibleCandidates:
    """Candidate rows meeting every constraint (never the protected partner), and what each removed."""

    rows: np.ndarray  # (m,) int64
    reports: tuple[ConstraintReport, ...]  # one per constraint, in the order applied


@dataclass(frozen=True)
class PartnerFeatures:
    """Pair features of the deal against one partner."""

    row: int
    features: np.ndarray  # (F,) float32, FEATURE_COLUMNS order


@dataclass(frozen=True)
class CandidateFeatures:
    """Pair features of the deal against the eligible candidates, and against the protected partner."""

    rows: np.ndarray  # (m,) int64, the eligible candidates
    features: np.ndarray  # (m, F) float32, FEATURE_COLUMNS order
    protected: PartnerFeatures | None


@dataclass(frozen=True)
class ScoredPartner:
    """One partner through the model."""

    row: int
    features: np.ndarray  # (F,) float32
    win_probability: float  # in [0, 1]


@dataclass(frozen=True)
class ScoredCandidates:
    """The eligible candidates in merit order (by win probability, ties by partner id), and the
    protected partner scored apart."""

    rows: np.ndarray  # (m,) int64
    features: np.ndarray  # (m, F) float32
    win_probability: np.ndarray  # (m,) in [0, 1], non-increasing
    protected: ScoredPartner | None

    @property
    def count(self) -> int:
        """Partners the model scored."""
        return len(self.rows) + (self.protected is not None)


@dataclass(frozen=True)
class RankedRows:
    """The partners to return, in rank order: the protected partner first, then the best on merit."""

    rows: np.ndarray  # (r,) int64, r <= max_results
    features: np.ndarray  # (r, F) float32
    win_probability: np.ndarray  # (r,) in [0, 1]


def merit_order(partner_ids: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Positions of (n,) partners by descending win probability, ties by partner id: the ranking rule."""
    return np.lexsort((partner_ids, -probabilities))


def retrieve(
    state: RoutingState, request: ParsedRequest, query_vector: np.ndarray, exhaustive: bool
) -> RetrievedCandidates:
    """The rows worth scoring, before constraints. `query_vector` (d,) float32: the requirement text.

    An explicit candidate pool is taken as it is. When few partners meet the constraints at all
    (`exhaustive_limit`), or `exhaustive`, every eligible partner is a candidate (exact). Otherwise
    the candidates are the text neighbours, the history shortlist and the registered partner (so
    that its merit rank is known, or because it is protected anyway).
    """
    nothing = np.zeros(0, dtype=np.int64)
    if request.candidate_pool is not None:
        return RetrievedCandidates("candidate_pool", request.candidate_pool, nothing, nothing)
    if exhaustive or request.eligible.sum() <= state.settings.exhaustive_limit:
        return RetrievedCandidates("all_eligible", np.flatnonzero(request.eligible), nothing, nothing)
    neighbours = min(state.settings.text_neighbours, len(state.index))
    positions, _ = state.index.search(query_vector.reshape(1, -1), neighbours)
    text_rows = state.index_rows[positions[0][positions[0] >= 0]]
    shortlist_rows = history_shortlist(state, request.allowed_regions, request.products)
    registration = [request.registered_row] if request.registered_row is not None else []
    rows = np.unique(np.concatenate([text_rows, shortlist_rows, registration]).astype(np.int64))
    return RetrievedCandidates("retrieval", rows, text_rows, shortlist_rows)


def history_shortlist(state: RoutingState, regions: tuple[int, ...], products: np.ndarray) -> np.ndarray:
    """(<= shortlist_size,) rows: the partners of `regions` with the highest prototype log-odds,
    averaged over the deal's `products` (P,) bool (multi-product features are near the mean of
    single-product ones: certification level and coverage are means, win rates pooled)."""
    present = [state.shortlist_logits[region] for region in regions if region in state.shortlist_logits]
    if not present:
        return np.zeros(0, dtype=np.int64)
    candidates = np.concatenate([region.rows for region in present])
    proxy = np.concatenate([region.logits[:, products].mean(axis=1) for region in present])
    size = state.settings.shortlist_size
    return candidates[np.argpartition(-proxy, size)[:size]] if len(candidates) > size else candidates


def constrain(request: ParsedRequest, retrieved: RetrievedCandidates) -> EligibleCandidates:
    """Apply the request's constraints in order to the retrieved rows but the protected partner,
    counting the rows each one removes."""
    remaining = retrieved.rows
    if request.protected_row is not None:
        remaining = remaining[remaining != request.protected_row]
    reports = []
    for constraint in request.constraints:
        keep = constraint.passes[remaining]
        reports.append(ConstraintReport(name=constraint.name, detail=constraint.detail, removed=int((~keep).sum())))
        remaining = remaining[keep]
    return EligibleCandidates(remaining, tuple(reports))


def top_up(
    state: RoutingState, request: ParsedRequest, eligible: EligibleCandidates, query_vector: np.ndarray
) -> EligibleCandidates:
    """When the constraints left fewer retrieved rows than `max_results`, add the eligible partners
    closest in text, as many as text retrieval would give (an exact scan over the eligible vectors;
    rare), never the protected partner (it is ranked apart). Otherwise `eligible` unchanged."""
    if len(eligible.rows) >= request.max_results:
        return eligible
    already = eligible.rows if request.protected_row is None else np.append(eligible.rows, request.protected_row)
    others = np.setdiff1d(np.flatnonzero(request.eligible), already)
    similarity = state.context.partner_vectors[others] @ query_vector
    count = max(state.settings.text_neighbours, request.max_results)
    closest = others[np.argsort(-similarity, kind="stable")[:count]]
    return EligibleCandidates(np.concatenate([eligible.rows, closest]), eligible.reports)


def no_partner_left(state: RoutingState, request: ParsedRequest) -> RoutingConflictError:
    """The error for a request that no partner satisfies, saying how many each constraint leaves."""
    pool = request.candidate_pool
    scope = pool if pool is not None else np.arange(len(state.context.partner_ids))
    where = f"the {len(scope)} partners of the candidate pool" if pool is not None else "the catalogue"
    remaining = scope
    steps = []
    for constraint in request.constraints:
        remaining = remaining[constraint.passes[remaining]]
        steps.append(f"{constraint.name} ({constraint.detail}) leaves {len(remaining)}")
    return RoutingConflictError(
        "options.candidate_pool" if pool is not None else "options",
        f"no partner meets every constraint among {where}: " + "; ".join(steps),
    )


def featurise(
    state: RoutingState, request: ParsedRequest, query_vector: np.ndarray, eligible: EligibleCandidates
) -> CandidateFeatures:
    """Pair features of the request's deal, created at the state's as-of time with requirement
    embedding `query_vector` (d,), against the eligible rows and the protected partner."""
    deal = single_deal(state.as_of_seconds, request.region, request.products, request.amount, query_vector)
    protected = request.protected_row
    rows = eligible.rows if protected is None else np.concatenate([eligible.rows, [protected]])
    # One feature call for all of them; the protected partner's row is split off after.
    features = single_deal_features(state.context, deal, rows)
    count = len(eligible.rows)
    return CandidateFeatures(
        rows=eligible.rows,
        features=features[:count],
        protected=None if protected is None else PartnerFeatures(protected, features[count]),
    )


def score(state: RoutingState, candidates: CandidateFeatures) -> ScoredCandidates:
    """Win probabilities of the candidates (in merit order) and of the protected partner."""
    protected = candidates.protected
    features = candidates.features
    if protected is not None:  # one model call for all of them
        features = np.concatenate([features, protected.features.reshape(1, -1)])
    probabilities = state.model.predict_win_probability(features)
    count = len(candidates.rows)
    on_merit = merit_order(state.context.partner_ids[candidates.rows], probabilities[:count])
    return ScoredCandidates(
        rows=candidates.rows[on_merit],
        features=candidates.features[on_merit],
        win_probability=probabilities[:count][on_merit],
        protected=(
            None if protected is None else ScoredPartner(protected.row, protected.features, float(probabilities[count]))
        ),
    )


def rank(scored: ScoredCandidates, max_results: int) -> RankedRows:
    """The protected partner at rank 1, then the best candidates on merit: `max_results` in all."""
    protected = scored.protected
    if protected is None:
        return RankedRows(
            scored.rows[:max_results], scored.features[:max_results], scored.win_probability[:max_results]
        )
    on_merit = max_results - 1
    return RankedRows(
        rows=np.concatenate([[protected.row], scored.rows[:on_merit]]).astype(np.int64),
        features=np.concatenate([protected.features.reshape(1, -1), scored.features[:on_merit]]),
        win_probability=np.concatenate([[protected.win_probability], scored.win_probability[:on_merit]]),
    )


def explain(state: RoutingState, ranked: RankedRows, registered_row: int | None) -> list[RankedPartner]:
    """The ranked partners with their top reasons from the model's feature contributions."""
    reasons = state.model.explain(ranked.features, top_k=REASONS_PER_PARTNER)
    return [
        RankedPartner(
            rank=position,
            partner_id=str(state.context.partner_ids[row]),
            name=str(state.partner_names[row]),
            win_probability=float(probability),
            registered=bool(row == registered_row),
            reasons=[Reason(feature=r.feature, text=r.text, contribution=float(r.contribution)) for r in why],
        )
        for position, (row, probability, why) in enumerate(
            zip(ranked.rows, ranked.win_probability, reasons, strict=True), start=1
        )
    ]


def resolve_channel_conflict(
    state: RoutingState, request: ParsedRequest, scored: ScoredCandidates
) -> ChannelConflict | None:
    """How the deal registration was handled: None without one; else the registered partner's rank
    on win probability alone among the eligible candidates (None when it fails a constraint or was
    not retrieved) and, when protected, the partner it displaced from rank 1."""
    registered = request.registered_row
    if registered is None:
        return None
    registered_id = str(state.context.partner_ids[registered])
    failed = [constraint.name for constraint in request.constraints if not constraint.passes[registered]]
    protected = scored.protected
    if protected is not None:
        beaten_by = int(np.sum(scored.win_probability > protected.win_probability))
        merit_rank = None if failed else beaten_by + 1
        displaced = str(state.context.partner_ids[scored.rows[0]]) if len(scored.rows) and merit_rank != 1 else None
        message = f"deal registered by {registered_id}: protected at rank 1"
        message += f" although it fails {', '.join(failed)}" if failed else ""
        return ChannelConflict(
            registered_partner_id=registered_id,
            status="protected",
            merit_rank=merit_rank,
            displaced_partner_id=displaced,
            message=message,
        )
    position = np.flatnonzero(scored.rows == registered)
    overridden_rank = int(position[0]) + 1 if len(position) else None
    left_out = f"left out: fails {', '.join(failed)}" if failed else "not among the retrieved candidates"
    return ChannelConflict(
        registered_partner_id=registered_id,
        status="overridden",
        merit_rank=overridden_rank,
        displaced_partner_id=None,
        message=f"registration by {registered_id} overridden: ranked on merit "
        + (f"(rank {overridden_rank})" if overridden_rank is not None else f"({left_out})"),
    )
