"""`POST /team`, pure: assemble partner teams for a multi-product deal with the team bundle.

The team bundle (`partnermatch-team`) holds a win model, its partners' history and index, and the
team model (`models.team`). Its routing state (`serving.routing`, built like the win champion's)
gives the constraints, the load ratios and the per-product history shortlists. A request:

    parse (routing's request parser: region, products, constraints)
    -> candidates per requirement: the eligible partners nearest in text to the requirement text plus
       the product's name (FAISS) and the eligible partners strongest on history for the product
       (the routing state's shortlist log-odds), plus the required members
    -> `models.team.build_instance` (member fits by the win model, co-sell history as of the state)
    -> `models.team.assemble_teams` (HiGHS seed + beam search over the team model)
    -> `models.team.describe_team` (members, cohesion, reasons, exact Shapley credit).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import io, schema
from features.pairs import FeatureError
from features.teams import CoSellHistory, uncovered_requirement
from models.team import (
    TeamInstance,
    TeamLimits,
    TeamModel,
    assemble_teams,
    build_instance,
    describe_team,
    load_team_model,
    model_scorer,
)
from models.win import WinModel
from serving.routing import RoutingConflictError
from serving.routing.request import ParsedRequest, parse_request, partner_rows
from serving.routing.state import RoutingState, single_deal
from serving.schemas import ModelInfo, Reason, RouteOptions, RouteRequest
from serving.team_schemas import TeamMemberOut, TeamOut, TeamRequest, TeamResponse

TEAM_TRAINING_COMMAND = "partnermatch train-team"


class ModelNotRegisteredError(ValueError):
    """No version of a model the service needs carries the alias (maps to HTTP 503)."""


@dataclass(frozen=True)
class TeamSettings:
    """Candidate budget per requirement (the optimiser's time grows with the candidates)."""

    text_neighbours: int = 20  # eligible partners nearest to requirement text + product name
    strongest: int = 20  # eligible partners with the highest history log-odds for the product


@dataclass(frozen=True)
class TeamProblem:
    """One request as a team problem: the instance, its limits and the candidates per requirement."""

    instance: TeamInstance
    limits: TeamLimits
    candidate_counts: tuple[int, ...]  # (K,) eligible candidates per requirement


@dataclass(frozen=True)
class TeamAssembler:
    """What `POST /team` reads: the team bundle's routing state, win and team models, co-sell
    history and the embedded product names. Immutable; built once per process."""

    state: RoutingState
    win_model: WinModel
    team_model: TeamModel
    history: CoSellHistory
    product_vectors: np.ndarray  # (P, d) float32, unit rows, context product order
    settings: TeamSettings

    @classmethod
    def from_bundle(cls, state: RoutingState, bundle_dir: Path, settings: TeamSettings | None = None) -> TeamAssembler:
        """Over the team bundle in `bundle_dir` whose routing state is `state`."""
        if not isinstance(state.model, WinModel):
            raise TypeError(f"team assembly needs a models.win.WinModel, got {type(state.model).__name__}")
        outcomes = io.read_table(bundle_dir / f"{schema.OUTCOMES.name}.parquet", schema.OUTCOMES)
        vectors = state.encoder.encode(list(state.context.products))
        return cls(
            state=state,
            win_model=state.model,
            team_model=load_team_model(bundle_dir),
            history=CoSellHistory.build(outcomes, pd.Index(state.context.partner_ids)),
            product_vectors=vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12),
            settings=settings or TeamSettings(),
        )

    @property
    def model_info(self) -> ModelInfo:
        return self.state.model_info


def routing_request(request: TeamRequest) -> RouteRequest:
    """The team request as routing's parser takes it (constraints only; the registration is a
    required member here, never protected at a rank)."""
    options = request.options
    return RouteRequest(
        deal=request.deal,
        options=RouteOptions(
            allowed_regions=options.allowed_regions,
            excluded_partner_ids=options.excluded_partner_ids,
            respect_capacity=options.respect_capacity,
            override_registration=True,
        ),
    )


def required_rows(state: RoutingState, request: TeamRequest, parsed: ParsedRequest) -> np.ndarray:
    """(r,) rows of the required members (the registered partner included). UnknownPartnerError for
    an unknown id; RoutingConflictError for more than max_members or one failing a constraint."""
    field = "options.required_partner_ids"
    ids = list(request.options.required_partner_ids)
    registered = request.deal.registered_partner_id
    rows = partner_rows(state, ids, field)
    if registered is not None and registered not in ids:
        ids.append(registered)
        rows = np.append(rows, partner_rows(state, [registered], "deal.registered_partner_id"))
    if len(ids) > request.options.max_members:
        raise RoutingConflictError(
            field, f"{len(ids)} required partners (registered partner included) exceed max_members"
        )
    if len(ids) > len(request.deal.products):
        raise RoutingConflictError(
            field, f"{len(ids)} required partners cannot each cover one of {len(request.deal.products)} requirements"
        )
    for partner_id, row in zip(ids, rows.tolist(), strict=True):
        failed = [constraint.name for constraint in parsed.constraints if not constraint.passes[row]]
        if failed:
            raise RoutingConflictError(field, f"required partner {partner_id!r} fails {', '.join(failed)}")
    return rows


def requirement_candidates(
    assembler: TeamAssembler, parsed: ParsedRequest, query_vector: np.ndarray, required: np.ndarray
) -> list[np.ndarray]:
    """Per requirement (the deal's products in context order): (c_k,) int64 eligible candidate rows.
    Raises FeatureError on `deal.products` for the first requirement no eligible partner covers."""
    state, settings = assembler.state, assembler.settings
    products = np.flatnonzero(parsed.products)
    queries = query_vector[None, :] + assembler.product_vectors[products]
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    # A text and product name without a known token embed to zero: no text neighbours, history only.
    has_text = norms[:, 0] > 1e-6
    # Over-fetch: the neighbours that fail a constraint are dropped after the search.
    fetch = min(len(state.index), 4 * settings.text_neighbours)
    positions = np.full((products.size, fetch), -1, dtype=np.int64)
    if has_text.any():
        unit = (queries[has_text] / norms[has_text]).astype(np.float32)
        positions[has_text] = state.index.search(unit, fetch)[0]
    regions = [region for region in parsed.allowed_regions if region in state.shortlist_logits]
    shortlists = [state.shortlist_logits[region] for region in regions]
    shortlist_rows = np.concatenate([shortlist.rows for shortlist in shortlists] + [np.zeros(0, dtype=np.int64)])
    lists = []
    for k, product in enumerate(products.tolist()):
        text_rows = state.index_rows[positions[k][positions[k] >= 0]]
        text_rows = text_rows[parsed.eligible[text_rows]][: settings.text_neighbours]
        logits = np.concatenate([shortlist.logits[:, product] for shortlist in shortlists] + [np.zeros(0)])
        keep = parsed.eligible[shortlist_rows]
        by_history = shortlist_rows[keep][np.argsort(-logits[keep], kind="stable")]
        strongest = pd.unique(by_history)[: settings.strongest]
        rows = np.unique(np.concatenate([text_rows, strongest, required]).astype(np.int64))
        if rows.size == 0:
            error = uncovered_requirement(state.context.products[product])
            raise FeatureError("deal.products", error.reason)
        lists.append(rows)
    return lists


def team_problem(assembler: TeamAssembler, request: TeamRequest) -> TeamProblem:
    """The request as a team problem (the exact same instance the optimiser sees). Raises
    FeatureError (422), UnknownPartnerError (404) or RoutingConflictError (409) naming the field."""
    state = assembler.state
    parsed = parse_request(state, routing_request(request))
    required = required_rows(state, request, parsed)
    query_vector = state.encoder.encode([parsed.requirement_text])[0]
    candidates = requirement_candidates(assembler, parsed, query_vector, required)
    deal = single_deal(state.as_of_seconds, parsed.region, parsed.products, parsed.amount, query_vector)
    instance = build_instance(state.context, assembler.win_model, assembler.history, deal, 0, candidates)
    limits = TeamLimits(
        max_members=request.options.max_members,
        required_partner_ids=tuple(str(state.context.partner_ids[row]) for row in required.tolist()),
    )
    return TeamProblem(instance, limits, tuple(len(rows) for rows in candidates))


def assemble(assembler: TeamAssembler, request: TeamRequest) -> TeamResponse:
    """The best `top_k` teams for the request's deal, each with members, credit and reasons."""
    problem = team_problem(assembler, request)
    teams = assemble_teams(
        problem.instance, model_scorer(assembler.team_model), problem.limits, top_k=request.options.top_k
    )
    state = assembler.state
    out = []
    for rank, team in enumerate(teams, start=1):
        proposal = describe_team(problem.instance, assembler.team_model, team)
        out.append(
            TeamOut(
                rank=rank,
                members=[
                    TeamMemberOut(
                        partner_id=member.partner_id,
                        name=str(state.partner_names[state.context.partner_position[member.partner_id]]),
                        covers=list(member.covers),
                        fit=list(member.fit),
                        credit=member.credit,
                    )
                    for member in proposal.members
                ],
                win_probability=proposal.win_probability,
                baseline_probability=proposal.baseline_probability,
                cohesion=proposal.cohesion,
                reasons=[
                    Reason(feature=reason.feature, text=reason.text, contribution=float(reason.contribution))
                    for reason in proposal.reasons
                ],
            )
        )
    return TeamResponse(
        decision_id=uuid.uuid4().hex,
        deal_id=request.deal.deal_id,
        model=assembler.model_info,
        requirements=list(problem.instance.products),
        candidates_per_requirement=list(problem.candidate_counts),
        teams=out,
    )
