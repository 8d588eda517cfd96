"""`partnermatch shadow-report`: the champion and its shadow (`serving.shadow`) compared on the
decisions they both answered.

- agreement at k: mean over decisions of the Jaccard index and of the overlap (shared / k) of the
  two top-k partner lists, in [0, 1] (1: the same k partners);
- expected wins: the sum over decisions of each model's own top-1 win probability (what each
  expects to win if its first choice were sent);
- calibration on outcomes the CRM sent back (`POST /feedback`): log-loss (nats) and ECE of each
  model's probability for the partners that worked the deal, over attempts both models ranked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.calibration import log_loss
from models.registry import Paths
from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackEvent, FeedbackStore
from serving.schemas import RouteResponse
from serving.service import prepare_database
from training.evaluate import expected_calibration_error

AGREEMENT_AT = (1, 5, 10)  # top-k cut-offs of the agreement figures


def _top(response: RouteResponse, k: int) -> set[str]:
    return {partner.partner_id for partner in sorted(response.partners, key=lambda p: p.rank)[:k]}


def _probabilities(response: RouteResponse) -> dict[str, float]:
    return {partner.partner_id: partner.win_probability for partner in response.partners}


def _calibration(labels: list[int], probabilities: list[float]) -> dict[str, float]:
    return {"log_loss": log_loss(labels, probabilities), "ece": expected_calibration_error(labels, probabilities)}


def shadow_report(pairs: list[tuple[RouteResponse, RouteResponse]], outcomes: list[FeedbackEvent]) -> dict[str, Any]:
    """The comparison (see the module docstring) of (champion, shadow) responses to the same requests,
    with the outcome events of those decisions. JSON-ready."""
    report: dict[str, Any] = {
        "decisions": len(pairs),
        "champion_versions": sorted({champion.model.version for champion, _ in pairs}),
        "shadow_versions": sorted({shadow.model.version for _, shadow in pairs}),
    }
    if not pairs:
        return report
    agreement: dict[str, float] = {}
    for k in AGREEMENT_AT:
        jaccard, overlap = [], []
        for champion, shadow in pairs:
            ours, theirs = _top(champion, k), _top(shadow, k)
            jaccard.append(len(ours & theirs) / len(ours | theirs))
            overlap.append(len(ours & theirs) / k)
        agreement |= {f"jaccard_at_{k}": float(np.mean(jaccard)), f"overlap_at_{k}": float(np.mean(overlap))}
    report["agreement"] = agreement
    report["expected_wins"] = {
        "champion": float(sum(champion.partners[0].win_probability for champion, _ in pairs)),
        "shadow": float(sum(shadow.partners[0].win_probability for _, shadow in pairs)),
    }
    by_decision = {champion.decision_id: (champion, shadow) for champion, shadow in pairs}
    labels: list[int] = []
    champion_probabilities: list[float] = []
    shadow_probabilities: list[float] = []
    for event in outcomes:
        if event.kind != "outcome" or event.decision_id not in by_decision:
            continue
        champion_response, shadow_response = by_decision[event.decision_id]
        by_champion, by_shadow = _probabilities(champion_response), _probabilities(shadow_response)
        for partner_id in event.partner_ids:
            if partner_id in by_champion and partner_id in by_shadow:
                labels.append(int(bool(event.won)))
                champion_probabilities.append(by_champion[partner_id])
                shadow_probabilities.append(by_shadow[partner_id])
    report["outcomes"] = {"attempts": len(labels)}
    if labels:
        report["outcomes"] |= {
            "champion": _calibration(labels, champion_probabilities),
            "shadow": _calibration(labels, shadow_probabilities),
        }
    return report


def shadow_report_from_log(paths: Paths) -> dict[str, Any]:
    """`shadow_report` over the service's decision log and feedback store."""
    url = prepare_database(paths)
    decisions, store = DecisionLog(url), FeedbackStore(url)
    try:
        pairs = [
            (RouteResponse.model_validate_json(champion), RouteResponse.model_validate_json(shadow))
            for champion, _, shadow in decisions.shadowed()
        ]
        outcomes = [item.event for item in store.since(0)]
    finally:
        decisions.close()
        store.close()
    return shadow_report(pairs, outcomes)
