"""Feedback as training history: the feedback store's events after a sequence number, as full
ecosystem tables. `serving.feedback.feedback_tables` gives what live features need; retraining also
embeds each routed deal's requirement text, so each deal is completed from the request its decision
logged."""

from __future__ import annotations

import pandas as pd

from features import schema
from serving.decision_log import DecisionLog
from serving.feedback import feedback_tables
from serving.feedback_store import FeedbackStore
from serving.schemas import RouteRequest


def feedback_history(
    store: FeedbackStore, decisions: DecisionLog, after: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """(deals, outcomes, engagement, sequence) of every event with a sequence number above `after`:
    deals with every DEALS column (deal id = decision id), and the latest sequence number read
    (`after` when there is none). Raises ValueError when an outcome's decision is not logged."""
    stored = store.since(after)
    deals, outcomes, engagement = feedback_tables([item.event for item in stored])
    routed = []
    for decision_id in deals[schema.DEAL_ID]:
        logged = decisions.get(str(decision_id))
        if logged is None:
            raise ValueError(f"feedback names decision {decision_id!r}, which the decision log does not hold")
        routed.append(RouteRequest.model_validate_json(logged.request_json).deal)
    deals = deals.assign(
        **{
            schema.SEGMENT: [deal.segment for deal in routed],
            schema.REQUIREMENT_TEXT: [deal.requirement_text for deal in routed],
            schema.REGISTERED_PARTNER_ID: [deal.registered_partner_id or "" for deal in routed],
        }
    )[list(schema.DEALS.columns)]
    sequence = max([after, *(item.seq for item in stored)])
    return deals, outcomes, engagement, sequence
