"""`POST /route/why_not`, pure: why a partner is not in a routed deal's top k.

The deal is parsed and retrieved as `POST /route` does (`serving.routing`); the asked partner joins
the retrieved candidates, and the request's constraint masks (routing's `Constraint.passes`, in the
order routing applies them) go to `models.why_not.why_not` with every candidate's probability and
features. The answer is the first constraint the partner fails; else, when it would rank in the top
k but retrieval never found it (or the candidate pool lacks it), `retrieval` / `candidate_pool`;
else the features that separate it from the partner ranked last in the top k (TreeSHAP gaps).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np

from models.why_not import why_not
from models.win import WinModel
from serving.routing import Router
from serving.routing.request import parse_request, partner_rows
from serving.routing.stages import retrieve
from serving.routing.state import single_deal, single_deal_features
from serving.schemas import CandidateSource, ConstraintName, RouteRequest
from serving.team_schemas import FeatureGapOut, WhyNotRequest, WhyNotResponse


def explain_why_not(router: Router, request: WhyNotRequest) -> WhyNotResponse:
    """Raises FeatureError (422), UnknownPartnerError (404 on `partner_id`) and RoutingConflictError
    (409), as `POST /route` does for the same deal and options."""
    state = router.state
    if not isinstance(state.model, WinModel):
        raise TypeError(f"why-not needs a models.win.WinModel, got {type(state.model).__name__}")
    parsed = parse_request(state, RouteRequest(deal=request.deal, options=request.options))
    asked = int(partner_rows(state, [request.partner_id], "partner_id")[0])
    query_vector = state.encoder.encode([parsed.requirement_text])[0]
    retrieved = retrieve(state, parsed, query_vector, exhaustive=False)
    protected = parsed.protected_row
    # The protected partner is ranked apart (rank 1 whatever its merit): never a merit candidate.
    rows = np.union1d(retrieved.rows, [asked]).astype(np.int64)
    rows = rows[(rows != protected) | (rows == asked)]
    merit_slots = parsed.max_results - (protected is not None)
    candidate_ids = state.context.partner_ids[rows]
    deal = single_deal(state.as_of_seconds, parsed.region, parsed.products, parsed.amount, query_vector)
    features = single_deal_features(state.context, deal, rows)
    probabilities = state.model.predict_win_probability(features)
    constraints = [(constraint.name, constraint.passes[rows]) for constraint in parsed.constraints]
    answer = why_not(
        request.partner_id, candidate_ids, constraints, probabilities, features, state.model, max(merit_slots, 1)
    )
    details: dict[str, str] = {constraint.name: constraint.detail for constraint in parsed.constraints}
    removed_by = cast("ConstraintName | CandidateSource | None", answer.removed_by)
    in_top_k = answer.in_top_k and merit_slots > 0
    if asked == protected:
        in_top_k, removed_by, answer = True, None, replace(answer, rank=1, compared_with=None, gaps=())
        message = f"{request.partner_id} registered the deal: protected at rank 1"
    elif removed_by is not None:
        message = f"{request.partner_id} fails the {removed_by} constraint ({details[removed_by]})"
    elif in_top_k and asked not in retrieved.rows:
        removed_by, in_top_k = retrieved.source, False
        message = f"{request.partner_id} would rank {answer.rank}, but {removed_by} did not include it"
    elif in_top_k:
        message = f"{request.partner_id} is in the top {parsed.max_results} at merit rank {answer.rank}"
    elif merit_slots == 0:
        message = f"the one result is the protected registered partner; {request.partner_id} ranks {answer.rank}"
    else:
        gaps = ", ".join(gap.feature for gap in answer.gaps) or "no single feature"
        message = f"{request.partner_id} ranks {answer.rank}, below {answer.compared_with}: {gaps}"
    compared = answer.compared_with
    return WhyNotResponse(
        model=state.model_info,
        deal_id=request.deal.deal_id,
        partner_id=request.partner_id,
        in_top_k=in_top_k,
        top_k=parsed.max_results,
        rank=answer.rank,
        win_probability=float(probabilities[np.flatnonzero(rows == asked)[0]]),
        removed_by=removed_by,
        removed_detail=None if removed_by is None else details.get(removed_by),
        compared_with=compared,
        compared_win_probability=(
            None if compared is None else float(probabilities[np.flatnonzero(candidate_ids == compared)[0]])
        ),
        gaps=[FeatureGapOut(feature=gap.feature, gap=gap.gap) for gap in answer.gaps],
        message=message,
    )
