"""Shadow mode: score every routed deal with a second model beside the champion, log its answer
with the decision, answer with the champion.

`PARTNERMATCH_SHADOW=challenger` makes the service load `partnermatch-win@challenger` too (when one
is registered; else it serves without a shadow and says so in its log). Each new decision (not a
replay) is routed by the shadow as well, with the same live features (its own `LiveRouter` over the
feedback store), and the shadow's version and response are stored on the decision's row. The cost
is a second route per request, on the latency path. A shadow that fails never fails the request:
the error is logged and the champion's answer goes out. `partnermatch shadow-report` compares the
two from the log and the feedback.
"""

from __future__ import annotations

import json
import logging
import os

from models.registry import CHALLENGER
from serving.decision_log import DecisionLog
from serving.feedback import LiveRouter
from serving.schemas import RouteRequest

SHADOW_ENV = "PARTNERMATCH_SHADOW"
SHADOW_ALIASES = (CHALLENGER,)  # which registry aliases may shadow the champion

logger = logging.getLogger(__name__)


def shadow_alias() -> str | None:
    """The alias named by `PARTNERMATCH_SHADOW` (None when unset or empty). Raises ValueError for
    another value."""
    value = os.environ.get(SHADOW_ENV, "").strip()
    if not value:
        return None
    if value not in SHADOW_ALIASES:
        raise ValueError(f"{SHADOW_ENV}={value!r}: expected one of {', '.join(SHADOW_ALIASES)} (or unset)")
    return value


class Shadow:
    """The shadow model's live router and the log its answers go to."""

    def __init__(self, live: LiveRouter, decisions: DecisionLog) -> None:
        self.live = live
        self.decisions = decisions

    @property
    def version(self) -> str:
        return self.live.base.model_info.version

    def answer(self, request: RouteRequest, champion_response_json: str) -> None:
        """Route `request` with the shadow and store its answer on the champion's decision. Never
        raises: a shadow that fails is logged, and the champion's answer stands."""
        try:
            decision_id = json.loads(champion_response_json)["decision_id"]
            response = self.live.current().route(request)
            self.decisions.attach_shadow(decision_id, response.model.version, response.model_dump_json())
        except Exception:
            logger.exception("the shadow model v%s could not answer; the champion's answer stands", self.version)
