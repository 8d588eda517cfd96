"""`POST /route/batch`, pure: route many deals, then assign them globally under partner capacities.

Each deal is routed as `POST /route` would route it (`Router.route`: constraints, protection of a
registered partner, calibrated probabilities); its ranked partners are its candidates. The batch is
then assigned by `models.assignment`: the plan of maximum expected wins (each deal to at most one
partner, each partner within its capacity for the batch, optionally at least `exposure_share` of the
assigned deals on emerging partners), beside greedy one-by-one routing of the same deals in order.
Decisions of a batch are not logged (`POST /route` logs single decisions).
"""

from __future__ import annotations

import numpy as np

from features.pairs import FeatureError
from features.progress import SILENT, Progress
from models.assignment import Plan, assign_globally, assign_greedily, emerging_partners
from serving.routing import Router
from serving.team_schemas import (
    BatchAssignment,
    BatchOptions,
    BatchRouteRequest,
    BatchRouteResponse,
    PartnerExposure,
    PlanSummary,
)


def batch_capacity(router: Router, options: BatchOptions) -> np.ndarray:
    """(n,) int64 deals of the batch each partner can take: `capacity_per_partner` when given, else
    its declared capacity minus its deals of the load window (never below 0)."""
    context = router.context
    if options.capacity_per_partner is not None:
        return np.full(len(context.partner_ids), options.capacity_per_partner, dtype=np.int64)
    capacity = context.partner_capacity
    remaining = capacity - router.state.load_ratio * capacity
    return np.maximum(np.floor(remaining + 1e-9), 0).astype(np.int64)


def routed_candidates(
    router: Router, request: BatchRouteRequest, progress: Progress = SILENT
) -> tuple[np.ndarray, np.ndarray]:
    """Route every deal: (D, C) int64 candidate rows (-1 padding) and (D, C) win probabilities,
    C = the largest max_results. A routing error is re-raised naming the deal: `deals[3].deal.region`."""
    width = max(item.options.max_results for item in request.deals)
    candidates = np.full((len(request.deals), width), -1, dtype=np.int64)
    probability = np.zeros(candidates.shape)
    position = router.context.partner_position
    for index, item in enumerate(request.deals):
        progress.count(index, len(request.deals))
        try:
            response = router.route(item)
        except FeatureError as error:
            raise type(error)(f"deals[{index}].{error.field}", error.reason) from error
        for slot, partner in enumerate(response.partners):
            candidates[index, slot] = position[partner.partner_id]
            probability[index, slot] = partner.win_probability
    progress.count(len(request.deals), len(request.deals))
    return candidates, probability


def _summary(plan: Plan, emerging: np.ndarray) -> PlanSummary:
    return PlanSummary(
        expected_wins=plan.expected_wins,
        assigned=int((plan.partner_rows >= 0).sum()),
        emerging_share=plan.emerging_share(emerging),
    )


def route_batch(router: Router, request: BatchRouteRequest, progress: Progress = SILENT) -> BatchRouteResponse:
    """The global plan and greedy routing of the request's deals. Raises the routing domain errors
    naming the deal at fault, and `models.solver.SolverError` if HiGHS stops without an optimum."""
    options = request.options
    candidates, probability = routed_candidates(router, request, progress)
    # The MILP over the partners some deal can go to (not the whole catalogue).
    partners, local = np.unique(candidates[candidates >= 0], return_inverse=True)
    local_candidates = np.full(candidates.shape, -1, dtype=np.int64)
    local_candidates[candidates >= 0] = local
    context = router.context
    capacity = batch_capacity(router, options)[partners]
    as_of = router.state.as_of_seconds
    emerging = emerging_partners(
        context.partner_joined_seconds, context.partner_capacity, as_of, options.emerging_tenure_days
    )[partners]
    progress.step(f"assigning {len(request.deals)} deals among {partners.size} partners (HiGHS)")
    greedy = assign_greedily(local_candidates, probability, capacity)
    planned = assign_globally(local_candidates, probability, capacity, emerging, options.exposure_share)
    partner_ids = context.partner_ids[partners]

    def partner_of(plan: Plan, deal: int) -> str | None:
        row = int(plan.partner_rows[deal])
        return None if row < 0 else str(partner_ids[row])

    assignments = [
        BatchAssignment(
            index=deal,
            deal_id=item.deal.deal_id,
            partner_id=partner_of(planned, deal),
            win_probability=float(planned.probability[deal]) if planned.partner_rows[deal] >= 0 else None,
            greedy_partner_id=partner_of(greedy, deal),
        )
        for deal, item in enumerate(request.deals)
    ]
    busiest = np.flatnonzero(planned.exposure)[np.argsort(-planned.exposure[planned.exposure > 0], kind="stable")]
    return BatchRouteResponse(
        model=router.model_info,
        assignments=assignments,
        global_plan=_summary(planned, emerging),
        greedy=_summary(greedy, emerging),
        lift=planned.expected_wins / greedy.expected_wins - 1.0 if greedy.expected_wins > 0 else 0.0,
        exposure_share_target=options.exposure_share,
        exposure=[
            PartnerExposure(
                partner_id=str(partner_ids[row]),
                deals=int(planned.exposure[row]),
                capacity=int(capacity[row]),
                emerging=bool(emerging[row]),
            )
            for row in busiest.tolist()
        ],
    )
