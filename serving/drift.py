"""Recent traffic as drift columns: the features and win probabilities of the logged decisions.

For each logged decision of the served model, the request is parsed against the router's state and the
pair features of the deal with each partner the response returned are recomputed as routing computed
them: same encoder, one text per call as the service embeds (a batched call may differ slightly for a
quantised encoder), and the bundle's feature context. Live feedback that had moved a partner's history
features when the deal was routed is not replayed: those features are as of the bundle's history end.
The predictions are the logged win probabilities. Columns are named as in `models.drift` (features,
`PREDICTION_COLUMN`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.pairs import FEATURE_COLUMNS
from features.progress import SILENT, Progress
from models.drift import PREDICTION_COLUMN, DriftReport, drift_report, read_reference
from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, RegisteredVersion, local_bundle, version_by_alias
from serving.decision_log import DecisionLog, LoggedDecision
from serving.routing import Router
from serving.routing.request import parse_request, partner_rows
from serving.routing.state import single_deal, single_deal_features
from serving.schemas import RouteRequest, RouteResponse
from serving.service import load_router_of, prepare_database


def traffic_columns(router: Router, decisions: Sequence[LoggedDecision]) -> dict[str, np.ndarray]:
    """Column name -> (rows,) values over every (decision, returned partner) of `decisions` answered by
    the router's model name (any version: they share the feature definitions). Empty arrays when none.

    Raises FeatureError when a logged request no longer parses (a region or product the model lacks).
    """
    state = router.state
    served = [decision for decision in decisions if decision.model_name == state.model_info.name]
    requests = [RouteRequest.model_validate_json(decision.request_json) for decision in served]
    responses = [RouteResponse.model_validate_json(decision.response_json) for decision in served]
    parsed = [parse_request(state, request) for request in requests]
    feature_blocks = [np.zeros((0, len(FEATURE_COLUMNS)), dtype=np.float32)]
    predictions = [np.zeros(0)]
    for request, response in zip(parsed, responses, strict=True):
        vector = state.encoder.encode([request.requirement_text])[0]
        deal = single_deal(state.as_of_seconds, request.region, request.products, request.amount, vector)
        rows = partner_rows(state, [partner.partner_id for partner in response.partners], "partners")
        feature_blocks.append(single_deal_features(state.context, deal, rows))
        predictions.append(np.array([partner.win_probability for partner in response.partners]))
    features = np.concatenate(feature_blocks)
    columns = {name: features[:, position] for position, name in enumerate(FEATURE_COLUMNS)}
    return columns | {PREDICTION_COLUMN: np.concatenate(predictions)}


def champion_drift(paths: Paths, limit: int, progress: Progress = SILENT) -> tuple[RegisteredVersion, DriftReport]:
    """Drift of `partnermatch-win@champion` between its training window (the bundle's drift reference)
    and the latest `limit` decisions of the decision log. Raises ValueError when there is no champion,
    its bundle has no drift reference (trained before drift references existed: retrain), or the log
    holds no decision of the model."""
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    if champion is None:
        raise ValueError(f"no {REGISTERED_WIN_MODEL}@{CHAMPION} is registered: run `partnermatch train` first")
    reference = read_reference(local_bundle(paths, champion))
    if reference is None:
        raise ValueError(
            f"{REGISTERED_WIN_MODEL} v{champion.version} has no drift reference: retrain with `partnermatch train`"
        )
    router = load_router_of(paths, champion, progress)
    log = DecisionLog(prepare_database(paths))
    try:
        decisions = log.recent(limit)
    finally:
        log.close()
    progress.step(f"recomputing the features of {len(decisions):,} logged decisions")
    return champion, drift_report(reference, traffic_columns(router, decisions))
