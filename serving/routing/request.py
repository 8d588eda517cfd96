"""Request validation: a `RouteRequest` (already checked by pydantic for types and ranges) checked
against the served bundle's vocabularies and partners, and translated into its positions.

Raises the routing domain errors, each naming the dotted request field at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features import schema
from features.pairs import FeatureError
from serving.routing.state import RoutingState
from serving.schemas import ConstraintName, RouteOptions, RouteRequest


class UnknownPartnerError(FeatureError):
    """A partner id the served model does not know (maps to HTTP 404)."""


class RoutingConflictError(FeatureError):
    """The request cannot be satisfied as stated: no partner meets the constraints, or it excludes a
    protected registered partner (maps to HTTP 409)."""


@dataclass(frozen=True)
class Constraint:
    """One hard constraint of a request."""

    name: ConstraintName
    detail: str  # what it asks, in words
    passes: np.ndarray  # (n,) bool over the state's partner rows


@dataclass(frozen=True)
class ParsedRequest:
    """A request in the routing state's positions: n partner rows, P products."""

    region: int  # the deal's region
    products: np.ndarray  # (P,) bool, the deal's products
    amount: float  # USD > 0
    requirement_text: str
    max_results: int
    allowed_regions: tuple[int, ...]  # a partner must operate in one of these
    constraints: tuple[Constraint, ...]  # in the order applied
    eligible: np.ndarray  # (n,) bool, every constraint met
    candidate_pool: np.ndarray | None  # explicit candidate rows, replacing retrieval
    registered_row: int | None  # the partner that registered the deal
    protected_row: int | None  # the registered partner unless overridden: kept at rank 1, constraints or not


def parse_request(state: RoutingState, request: RouteRequest) -> ParsedRequest:
    """Check the request against the state's vocabularies and partners.

    Raises FeatureError (unknown region or product), UnknownPartnerError (unknown partner id) and
    RoutingConflictError (the request excludes its protected registered partner).
    """
    deal, options = request.deal, request.options
    region = region_position(state, deal.region, "deal.region")
    products = np.zeros(len(state.context.products), dtype=bool)
    products[[product_position(state, product, "deal.products") for product in deal.products]] = True
    allowed_regions = (
        tuple(region_position(state, name, "options.allowed_regions") for name in options.allowed_regions)
        if options.allowed_regions
        else (region,)
    )
    constraints = hard_constraints(state, options, allowed_regions)
    registered_row = (
        int(partner_rows(state, [deal.registered_partner_id], "deal.registered_partner_id")[0])
        if deal.registered_partner_id
        else None
    )
    protected_row = None if options.override_registration else registered_row
    if protected_row is not None and deal.registered_partner_id in set(options.excluded_partner_ids):
        raise RoutingConflictError(
            "options.excluded_partner_ids",
            f"excludes {deal.registered_partner_id}, which registered the deal and is protected; "
            "set options.override_registration to route without it",
        )
    candidate_pool = (
        partner_rows(state, options.candidate_pool, "options.candidate_pool") if options.candidate_pool else None
    )
    return ParsedRequest(
        region=region,
        products=products,
        amount=deal.amount,
        requirement_text=deal.requirement_text,
        max_results=options.max_results,
        allowed_regions=allowed_regions,
        constraints=constraints,
        eligible=np.logical_and.reduce([constraint.passes for constraint in constraints]),
        candidate_pool=candidate_pool,
        registered_row=registered_row,
        protected_row=protected_row,
    )


def region_position(state: RoutingState, region: str, field: str) -> int:
    """Position of `region` in the state's regions; FeatureError on `field` if unknown."""
    if region not in state.region_positions:
        raise FeatureError(field, f"unknown region {region!r}; known: {list(state.context.regions)}")
    return state.region_positions[region]


def product_position(state: RoutingState, product: str, field: str) -> int:
    """Position of `product` in the state's products; FeatureError on `field` if unknown."""
    if product not in state.product_positions:
        raise FeatureError(field, f"unknown product {product!r}; known: {list(state.context.products)}")
    return state.product_positions[product]


def partner_rows(state: RoutingState, partner_ids: Sequence[str], field: str) -> np.ndarray:
    """(k,) int64 rows of `partner_ids`; UnknownPartnerError on `field` naming the first unknown ones."""
    position = state.context.partner_position
    unknown = [partner_id for partner_id in partner_ids if partner_id not in position]
    if unknown:
        shown = ", ".join(repr(partner_id) for partner_id in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise UnknownPartnerError(field, f"unknown partner id(s) {shown}{more}")
    return np.array([position[partner_id] for partner_id in partner_ids], dtype=np.int64)


def hard_constraints(
    state: RoutingState, options: RouteOptions, allowed_regions: tuple[int, ...]
) -> tuple[Constraint, ...]:
    """The hard constraints of a request's `options`, in the order applied: region (operates in one
    of `allowed_regions`), then certifications, exclusions and capacity when asked for."""
    context = state.context
    n_partners = len(context.partner_ids)
    region_names = [context.regions[index] for index in allowed_regions]
    constraints = [
        Constraint(
            "region",
            f"operates in {' or '.join(region_names)}",
            np.asarray(context.partner_regions[:, list(allowed_regions)].any(axis=1)),
        )
    ]
    if options.required_certifications:
        passes = np.ones(n_partners, dtype=bool)
        for requirement in options.required_certifications:
            product = product_position(state, requirement.product, "options.required_certifications")
            passes &= context.partner_certifications[:, product] >= requirement.min_level
        wanted = ", ".join(f"{item.product} >= {item.min_level}" for item in options.required_certifications)
        constraints.append(Constraint("certifications", f"certified: {wanted}", passes))
    if options.excluded_partner_ids:
        passes = np.ones(n_partners, dtype=bool)
        passes[partner_rows(state, options.excluded_partner_ids, "options.excluded_partner_ids")] = False
        constraints.append(
            Constraint("excluded", f"not one of {len(options.excluded_partner_ids)} excluded partners", passes)
        )
    if options.respect_capacity:
        constraints.append(
            Constraint(
                "capacity",
                f"below declared capacity over the last {schema.LOAD_WINDOW.days} days",
                state.load_ratio < 1.0,
            )
        )
    return tuple(constraints)
