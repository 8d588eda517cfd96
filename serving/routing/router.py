"""`Router`: one model bundle's routing state and the stages composed into `route(request)`."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from features.embed import Encoder
from features.index import PartnerIndex
from features.pairs import FeatureContext
from serving.routing.request import parse_request
from serving.routing.stages import (
    constrain,
    explain,
    featurise,
    no_partner_left,
    rank,
    resolve_channel_conflict,
    retrieve,
    score,
    top_up,
)
from serving.routing.state import (
    RoutingSettings,
    RoutingState,
    ScoringModel,
    build_routing_state,
    single_deal,
    single_deal_features,
)
from serving.schemas import CandidateReport, ModelInfo, RouteRequest, RouteResponse


class Router:
    """Routes deals with one model bundle. Build once per process (the load-time precomputation
    takes seconds on 100k partners); `route` is read-only and thread-safe as far as the model, the
    index and the encoder are.

    `partners` and `history_deals` are the bundle's partner and deal tables (schema columns);
    `context` and `index` hold the same partners (in any order). Raises ValueError if they disagree.
    """

    def __init__(
        self,
        model: ScoringModel,
        context: FeatureContext,
        index: PartnerIndex,
        encoder: Encoder,
        partners: pd.DataFrame,
        history_deals: pd.DataFrame,
        model_info: ModelInfo,
        settings: RoutingSettings | None = None,
    ) -> None:
        self.state = build_routing_state(
            model, context, index, encoder, partners, history_deals, model_info, settings or RoutingSettings()
        )

    @classmethod
    def from_state(cls, state: RoutingState) -> Router:
        """A Router over an already built (or mapped, `serving.routing.shared`) state."""
        router = cls.__new__(cls)
        router.state = state
        return router

    @property
    def model(self) -> ScoringModel:
        return self.state.model

    @property
    def context(self) -> FeatureContext:
        """The bundle's feature context, frozen at the history end."""
        return self.state.context

    @property
    def index(self) -> PartnerIndex:
        return self.state.index

    @property
    def encoder(self) -> Encoder:
        return self.state.encoder

    @property
    def model_info(self) -> ModelInfo:
        return self.state.model_info

    @property
    def settings(self) -> RoutingSettings:
        return self.state.settings

    def route(self, request: RouteRequest, exhaustive: bool = False) -> RouteResponse:
        """Rank partners for the request's deal. `exhaustive` scores every eligible partner (exact).

        Raises FeatureError (bad vocabulary), UnknownPartnerError and RoutingConflictError, each with
        the dotted request field at fault.
        """
        state = self.state
        parsed = parse_request(state, request)
        query_vector = state.encoder.encode([parsed.requirement_text])[0]
        retrieved = retrieve(state, parsed, query_vector, exhaustive)
        eligible = constrain(parsed, retrieved)
        if retrieved.source == "retrieval":
            eligible = top_up(state, parsed, eligible, query_vector)
        if len(eligible.rows) == 0 and parsed.protected_row is None:
            raise no_partner_left(state, parsed)
        scored = score(state, featurise(state, parsed, query_vector, eligible))
        return RouteResponse(
            decision_id=uuid.uuid4().hex,
            deal_id=request.deal.deal_id,
            model=state.model_info,
            features_as_of=state.context.history_end.to_pydatetime(),
            partners=explain(state, rank(scored, parsed.max_results), parsed.registered_row),
            constraints=list(eligible.reports),
            candidates=CandidateReport(
                source=retrieved.source,
                retrieved=len(retrieved.rows),
                text_neighbours=len(retrieved.text_neighbour_rows),
                history_shortlist=len(retrieved.history_shortlist_rows),
                eligible_partners=int(parsed.eligible.sum()),
                scored=scored.count,
            ),
            channel_conflict=resolve_channel_conflict(state, parsed, scored),
        )

    def score_every_partner(self, request: RouteRequest) -> tuple[np.ndarray, np.ndarray]:
        """The literal brute force, a benchmark reference: every partner in the catalogue through the
        model for the request's deal. Returns (n,) win probabilities and the (n,) bool mask of the
        partners meeting the request's constraints, both in `context.partner_ids` order."""
        state = self.state
        parsed = parse_request(state, request)
        query_vector = state.encoder.encode([parsed.requirement_text])[0]
        deal = single_deal(state.as_of_seconds, parsed.region, parsed.products, parsed.amount, query_vector)
        every_row = np.arange(len(state.context.partner_ids), dtype=np.int64)
        features = single_deal_features(state.context, deal, every_row)
        return state.model.predict_win_probability(features), parsed.eligible
