"""Route one deal to partners: embed -> retrieve -> constrain -> score -> rank -> explain.

Pure Python over the model bundle's pieces (no bentoml): `Router.route(RouteRequest) -> RouteResponse`.

Features are point-in-time as of the bundle's history end: every partner's history up to and
including `context.history_end` counts, exactly as `features.pairs` computes training rows.

Retrieval is a union, because the model ranks on history as much as on text:
- text neighbours: the `text_neighbours` partners whose profile embedding is closest to the
  requirement text (FAISS);
- history shortlist: at load the model scores every partner, per region it operates in, for a
  single-product prototype deal of each product (median amount, the mean text similarity of the
  cell's recent deals); a request takes the `shortlist_size` partners with the highest of these
  log-odds averaged over its products. Partners whose history (not text) makes them strong are
  found here.
Hard constraints then filter the union, and only the survivors are scored (a few hundred rows).
When few partners meet the constraints at all (`exhaustive_limit`), all of them are scored instead,
which is exact; `route(..., exhaustive=True)` always does that (the brute-force reference).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from features import schema
from features.embed import Encoder
from features.index import PartnerIndex
from features.pairs import (
    FEATURE_COLUMNS,
    LOAD_RATIO,
    DealBatch,
    FeatureContext,
    FeatureError,
    frozen_at,
    pair_feature_matrix,
    product_mask,
    to_seconds,
)
from serving.schemas import (
    REASONS_PER_PARTNER,
    CandidateReport,
    CandidateSource,
    ChannelConflict,
    ConstraintName,
    ConstraintReport,
    ModelInfo,
    RankedPartner,
    Reason,
    RouteRequest,
    RouteResponse,
)


class UnknownPartnerError(FeatureError):
    """A partner id the served model does not know (maps to HTTP 404)."""


class RoutingConflictError(FeatureError):
    """The request cannot be satisfied as stated: no partner meets the constraints, or it excludes a
    protected registered partner (maps to HTTP 409)."""


class Explanation(Protocol):
    """One reason from the model's feature contributions (`models.win.Reason` fits)."""

    @property
    def feature(self) -> str: ...

    @property
    def contribution(self) -> float: ...

    @property
    def text(self) -> str: ...


class ScoringModel(Protocol):
    """What routing needs of the win model (`models.win.WinModel` fits). Features arrive as an
    (n, F) float32 array in `feature_names` order, which must be FEATURE_COLUMNS."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def predict_win_probability(self, features: np.ndarray) -> np.ndarray: ...

    def explain(self, features: np.ndarray, top_k: int = 3) -> Sequence[Sequence[Explanation]]: ...


@dataclass(frozen=True)
class RoutingSettings:
    """Candidate budget. Defaults are sized on measurements (see `partnermatch/bench/route.py`)."""

    text_neighbours: int = 50  # FAISS neighbours of the requirement text
    shortlist_size: int = 150  # strongest partners on history for the deal's regions and products
    exhaustive_limit: int = 300  # score every eligible partner when no more than this many exist
    prototype_deals: int = 8  # recent deals per (region, product) whose texts set the prototype similarity


@dataclass(frozen=True)
class _Constraint:
    name: ConstraintName
    detail: str
    passes: np.ndarray  # (n,) bool over the context's partners


@dataclass(frozen=True)
class _Parsed:
    """A request in the context's positions. n partners, P products."""

    region: int
    products: np.ndarray  # (P,) bool
    regions: list[int]  # allowed regions
    constraints: list[_Constraint]
    eligible: np.ndarray  # (n,) bool, every constraint met
    pool: np.ndarray | None  # explicit candidate rows
    registered: int | None  # row of the partner that registered the deal
    protected: bool  # registered and not overridden


@dataclass(frozen=True)
class _Candidates:
    source: CandidateSource
    retrieved: np.ndarray  # rows before the constraints
    text_neighbours: int
    history_shortlist: int
    eligible: np.ndarray  # rows after the constraints (never the protected partner)
    reports: list[ConstraintReport]


def merit_order(partner_ids: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Positions of (n,) partners by descending win probability, ties by partner id: the ranking rule."""
    return np.lexsort((partner_ids, -probabilities))


def _log_odds(probability: np.ndarray) -> np.ndarray:
    """(n,) probabilities -> (n,) log-odds, clipped away from 0 and 1."""
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped / (1 - clipped)))


class Router:
    """Routes deals with one model bundle. Build once per process; `route` is read-only and thread-safe
    as far as the model, the index and the encoder are.

    `partners` and `history_deals` are the bundle's partner and deal tables (schema columns);
    `context` and `index` hold the same partners (in any order).
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
        if len(index) != len(context.partner_ids):
            raise ValueError(f"the index holds {len(index)} partners, the feature context {len(context.partner_ids)}")
        if tuple(model.feature_names) != FEATURE_COLUMNS:
            raise ValueError(f"the model takes features {model.feature_names}, routing computes {FEATURE_COLUMNS}")
        if encoder.dimension != context.partner_vectors.shape[1]:
            raise ValueError(
                f"encoder {encoder.name} gives {encoder.dimension}-d vectors, "
                f"the partners were embedded in {context.partner_vectors.shape[1]}-d"
            )
        # Everything a partner had done by history_end counts: pair_features sees events strictly before.
        self.as_of_seconds = int(to_seconds([context.history_end])[0]) + 1
        self.model = model
        self.context = frozen_at(context, self.as_of_seconds)  # every request is routed as of this time
        self.index = index
        self.encoder = encoder
        self.model_info = model_info
        self.settings = settings or RoutingSettings()
        self._index_rows = np.array([context.partner_position[str(pid)] for pid in index.partner_ids], dtype=np.int64)
        names = partners.set_index(schema.PARTNER_ID)[schema.PARTNER_NAME]
        self._names = names.reindex(context.partner_ids).fillna("").astype(str).to_numpy()
        self._region_lookup = {region: position for position, region in enumerate(context.regions)}
        self._product_lookup = {product: position for position, product in enumerate(context.products)}
        self._load_ratio = self._partner_load_ratio()
        self._prototypes = self._prototype_logits(history_deals)

    # --- load-time precomputation -----------------------------------------------------------------

    def _deal(self, region: int, products: np.ndarray, amount: float, vector: np.ndarray) -> DealBatch:
        """One deal as of the history end. `products` (P,) bool, `vector` (d,) float32."""
        return DealBatch(
            region_index=np.array([region], dtype=np.int64),
            product_mask=products.reshape(1, -1),
            amount=np.array([amount], dtype=np.float64),
            created_seconds=np.array([self.as_of_seconds], dtype=np.int64),
            vectors=np.asarray(vector, dtype=np.float32).reshape(1, -1),
        )

    def _features(self, deal: DealBatch, rows: np.ndarray) -> np.ndarray:
        """(len(rows), F) features of the one deal against partner rows, FEATURE_COLUMNS order."""
        return pair_feature_matrix(self.context, deal, np.zeros(len(rows), dtype=np.int64), rows)

    def _partner_load_ratio(self) -> np.ndarray:
        """(n,) deals in the load window before the history end / declared capacity (deal-independent)."""
        rows = np.arange(len(self.context.partner_ids), dtype=np.int64)
        first_product = np.arange(len(self.context.products)) == 0
        any_deal = self._deal(0, first_product, 1.0, self.context.partner_vectors[0])
        return self._features(any_deal, rows)[:, FEATURE_COLUMNS.index(LOAD_RATIO)].astype(np.float64)

    def _prototype_logits(self, deals: pd.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """region -> (partner rows operating there (n_r,), win log-odds (n_r, P) float32 for a
        single-product prototype deal of each product in that region).

        A prototype deal has the median amount of the cell's deals and, as its text vector, the mean
        of up to `prototype_deals` recent requirement embeddings of the cell (partner . mean = the
        partner's mean similarity to those deals). A cell without deals borrows the product's deals
        in other regions.
        """
        context, settings = self.context, self.settings
        n_products = len(context.products)
        recent = deals.sort_values(schema.CREATED_AT, ascending=False)
        deal_products = product_mask(recent[schema.DEAL_PRODUCTS].astype(str).tolist(), context.products)
        deal_regions = recent[schema.DEAL_REGION].astype(str).map(self._region_lookup).fillna(-1).to_numpy()
        amounts = recent[schema.AMOUNT].to_numpy(dtype=np.float64)
        overall_median = float(np.median(amounts)) if len(amounts) else 1.0

        cells: dict[tuple[int, int], np.ndarray] = {}
        for region in range(len(context.regions)):
            for product in range(n_products):
                in_cell = np.flatnonzero((deal_regions == region) & deal_products[:, product])
                cells[(region, product)] = in_cell if len(in_cell) else np.flatnonzero(deal_products[:, product])
        sampled = np.unique(np.concatenate([rows[: settings.prototype_deals] for rows in cells.values()]))
        vectors = self.encoder.encode(recent[schema.REQUIREMENT_TEXT].astype(str).to_numpy()[sampled].tolist())
        vector_of = {int(deal_row): vectors[position] for position, deal_row in enumerate(sampled)}

        one_hot = np.eye(n_products, dtype=bool)
        logits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for region in range(len(context.regions)):
            rows = np.flatnonzero(context.partner_regions[:, region])
            if len(rows) == 0:
                continue
            by_product = np.zeros((len(rows), n_products), dtype=np.float32)
            for product in range(n_products):
                in_cell = cells[(region, product)]
                prototype = (
                    np.mean([vector_of[int(row)] for row in in_cell[: settings.prototype_deals]], axis=0)
                    if len(in_cell)
                    else np.zeros(self.encoder.dimension, dtype=np.float32)
                )
                amount = float(np.median(amounts[in_cell])) if len(in_cell) else overall_median
                features = self._features(self._deal(region, one_hot[product], amount, prototype), rows)
                by_product[:, product] = _log_odds(self.model.predict_win_probability(features))
            logits[region] = (rows, by_product)
        return logits

    # --- request validation -----------------------------------------------------------------------

    def _region(self, region: str, field: str) -> int:
        if region not in self._region_lookup:
            raise FeatureError(field, f"unknown region {region!r}; known: {list(self.context.regions)}")
        return self._region_lookup[region]

    def _product(self, product: str, field: str) -> int:
        if product not in self._product_lookup:
            raise FeatureError(field, f"unknown product {product!r}; known: {list(self.context.products)}")
        return self._product_lookup[product]

    def _partner_rows(self, partner_ids: Sequence[str], field: str) -> np.ndarray:
        position = self.context.partner_position
        unknown = [partner_id for partner_id in partner_ids if partner_id not in position]
        if unknown:
            shown = ", ".join(repr(partner_id) for partner_id in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise UnknownPartnerError(field, f"unknown partner id(s) {shown}{more}")
        return np.array([position[partner_id] for partner_id in partner_ids], dtype=np.int64)

    def _constraints(self, request: RouteRequest, regions: list[int]) -> list[_Constraint]:
        """The hard constraints of a request, as pass masks over all partners, in the order applied.
        `regions`: the allowed regions (indices)."""
        options = request.options
        n_partners = len(self.context.partner_ids)
        region_names = [self.context.regions[index] for index in regions]
        constraints = [
            _Constraint(
                "region",
                f"operates in {' or '.join(region_names)}",
                np.asarray(self.context.partner_regions[:, regions].any(axis=1)),
            )
        ]
        if options.required_certifications:
            passes = np.ones(n_partners, dtype=bool)
            for requirement in options.required_certifications:
                product = self._product(requirement.product, "options.required_certifications")
                passes &= self.context.partner_certifications[:, product] >= requirement.min_level
            wanted = ", ".join(f"{item.product} >= {item.min_level}" for item in options.required_certifications)
            constraints.append(_Constraint("certifications", f"certified: {wanted}", passes))
        if options.excluded_partner_ids:
            passes = np.ones(n_partners, dtype=bool)
            passes[self._partner_rows(options.excluded_partner_ids, "options.excluded_partner_ids")] = False
            constraints.append(
                _Constraint("excluded", f"not one of {len(options.excluded_partner_ids)} excluded partners", passes)
            )
        if options.respect_capacity:
            constraints.append(
                _Constraint(
                    "capacity",
                    f"below declared capacity over the last {schema.LOAD_WINDOW.days} days",
                    self._load_ratio < 1.0,
                )
            )
        return constraints

    # --- routing ----------------------------------------------------------------------------------

    def route(self, request: RouteRequest, exhaustive: bool = False) -> RouteResponse:
        """Rank partners for the request's deal. `exhaustive` scores every eligible partner (exact).

        Raises FeatureError (bad vocabulary), UnknownPartnerError and RoutingConflictError, each with
        the dotted request field at fault.
        """
        deal, max_results = request.deal, request.options.max_results
        parsed = self._parse(request)
        query = self.encoder.encode([deal.requirement_text])  # (1, d)
        found = self._candidates(parsed, query, max_results, exhaustive)

        # The protected partner is scored last, even when it fails a constraint: protection keeps it.
        rows = np.concatenate([found.eligible, [parsed.registered]]) if parsed.protected else found.eligible
        features = self._features(self._deal(parsed.region, parsed.products, deal.amount, query[0]), rows)
        probabilities = self.model.predict_win_probability(features)
        partner_ids = self.context.partner_ids[rows]
        eligible_count = len(found.eligible)
        on_merit = merit_order(partner_ids[:eligible_count], probabilities[:eligible_count])
        if parsed.protected:
            chosen = np.concatenate([[len(rows) - 1], on_merit[: max_results - 1]])
        else:
            chosen = on_merit[:max_results]

        reasons = self.model.explain(features[chosen], top_k=REASONS_PER_PARTNER)
        partners = [
            RankedPartner(
                rank=rank,
                partner_id=str(partner_ids[position]),
                name=str(self._names[rows[position]]),
                win_probability=float(probabilities[position]),
                registered=bool(rows[position] == parsed.registered),
                reasons=[Reason(feature=r.feature, text=r.text, contribution=float(r.contribution)) for r in why],
            )
            for rank, (position, why) in enumerate(zip(chosen, reasons, strict=True), start=1)
        ]
        return RouteResponse(
            decision_id=uuid.uuid4().hex,
            deal_id=deal.deal_id,
            model=self.model_info,
            features_as_of=self.context.history_end.to_pydatetime(),
            partners=partners,
            constraints=found.reports,
            candidates=CandidateReport(
                source=found.source,
                retrieved=len(found.retrieved),
                text_neighbours=found.text_neighbours,
                history_shortlist=found.history_shortlist,
                eligible_partners=int(parsed.eligible.sum()),
                scored=len(rows),
            ),
            channel_conflict=self._channel_conflict(parsed, found.eligible, on_merit, probabilities),
        )

    def score_every_partner(self, request: RouteRequest) -> tuple[np.ndarray, np.ndarray]:
        """The literal brute force, a benchmark reference: every partner in the catalogue through the
        model for the request's deal. Returns (n,) win probabilities and the (n,) bool mask of the
        partners meeting the request's constraints, both in `context.partner_ids` order."""
        parsed = self._parse(request)
        query = self.encoder.encode([request.deal.requirement_text])
        deal = self._deal(parsed.region, parsed.products, request.deal.amount, query[0])
        every_row = np.arange(len(self.context.partner_ids), dtype=np.int64)
        return self.model.predict_win_probability(self._features(deal, every_row)), parsed.eligible

    def _parse(self, request: RouteRequest) -> _Parsed:
        deal, options = request.deal, request.options
        region = self._region(deal.region, "deal.region")
        products = np.zeros(len(self.context.products), dtype=bool)
        products[[self._product(product, "deal.products") for product in deal.products]] = True
        regions = (
            [self._region(name, "options.allowed_regions") for name in options.allowed_regions]
            if options.allowed_regions
            else [region]
        )
        constraints = self._constraints(request, regions)
        registered = (
            int(self._partner_rows([deal.registered_partner_id], "deal.registered_partner_id")[0])
            if deal.registered_partner_id
            else None
        )
        protected = registered is not None and not options.override_registration
        if protected and deal.registered_partner_id in set(options.excluded_partner_ids):
            raise RoutingConflictError(
                "options.excluded_partner_ids",
                f"excludes {deal.registered_partner_id}, which registered the deal and is protected; "
                "set options.override_registration to route without it",
            )
        pool = self._partner_rows(options.candidate_pool, "options.candidate_pool") if options.candidate_pool else None
        return _Parsed(
            region=region,
            products=products,
            regions=regions,
            constraints=constraints,
            eligible=np.logical_and.reduce([constraint.passes for constraint in constraints]),
            pool=pool,
            registered=registered,
            protected=protected,
        )

    def _candidates(self, parsed: _Parsed, query: np.ndarray, max_results: int, exhaustive: bool) -> _Candidates:
        """Retrieve, then apply the constraints in order (counting what each removes)."""
        text_rows = np.zeros(0, dtype=np.int64)
        shortlist_rows = np.zeros(0, dtype=np.int64)
        source: CandidateSource
        if parsed.pool is not None:
            source, retrieved = "candidate_pool", parsed.pool
        elif exhaustive or parsed.eligible.sum() <= self.settings.exhaustive_limit:
            source, retrieved = "all_eligible", np.flatnonzero(parsed.eligible)
        else:
            source = "retrieval"
            positions, _ = self.index.search(query, min(self.settings.text_neighbours, len(self.index)))
            text_rows = self._index_rows[positions[0][positions[0] >= 0]]
            shortlist_rows = self._shortlist(parsed.regions, parsed.products)
            # The registered partner joins so that its merit rank is known (or it is protected anyway).
            registration = [parsed.registered] if parsed.registered is not None else []
            retrieved = np.unique(np.concatenate([text_rows, shortlist_rows, registration]).astype(np.int64))

        remaining = retrieved[retrieved != parsed.registered] if parsed.protected else retrieved
        reports: list[ConstraintReport] = []
        for constraint in parsed.constraints:
            keep = constraint.passes[remaining]
            reports.append(ConstraintReport(name=constraint.name, detail=constraint.detail, removed=int((~keep).sum())))
            remaining = remaining[keep]
        if source == "retrieval" and len(remaining) < max_results:
            remaining = self._top_up(remaining, parsed.eligible, query, max_results)
        if len(remaining) == 0 and not parsed.protected:
            raise RoutingConflictError(
                "options.candidate_pool" if parsed.pool is not None else "options",
                self._why_empty(parsed.constraints, parsed.pool),
            )
        return _Candidates(source, retrieved, len(text_rows), len(shortlist_rows), remaining, reports)

    def _shortlist(self, regions: list[int], products: np.ndarray) -> np.ndarray:
        """The `shortlist_size` partners of the allowed `regions` with the highest prototype log-odds,
        averaged over the deal's `products` (P,) bool (multi-product features are near the mean of
        single-product ones: certification level and coverage are means, win rates pooled)."""
        present = [region for region in regions if region in self._prototypes]
        if not present:
            return np.zeros(0, dtype=np.int64)
        candidates = np.concatenate([self._prototypes[region][0] for region in present])
        proxy = np.concatenate([self._prototypes[region][1][:, products].mean(axis=1) for region in present])
        size = self.settings.shortlist_size
        return candidates[np.argpartition(-proxy, size)[:size]] if len(candidates) > size else candidates

    def _top_up(self, candidates: np.ndarray, eligible: np.ndarray, query: np.ndarray, wanted: int) -> np.ndarray:
        """Strict constraints left fewer than `wanted` candidates: add the eligible partners closest in
        text, as many as text retrieval would give (an exact scan over the eligible vectors; rare)."""
        others = np.setdiff1d(np.flatnonzero(eligible), candidates)
        similarity = self.context.partner_vectors[others] @ query[0]
        count = max(self.settings.text_neighbours, wanted)
        closest = others[np.argsort(-similarity, kind="stable")[:count]]
        return np.concatenate([candidates, closest])

    def _why_empty(self, constraints: list[_Constraint], pool: np.ndarray | None) -> str:
        scope = pool if pool is not None else np.arange(len(self.context.partner_ids))
        where = f"the {len(scope)} partners of the candidate pool" if pool is not None else "the catalogue"
        remaining = scope
        steps = []
        for constraint in constraints:
            remaining = remaining[constraint.passes[remaining]]
            steps.append(f"{constraint.name} ({constraint.detail}) leaves {len(remaining)}")
        return f"no partner meets every constraint among {where}: " + "; ".join(steps)

    def _channel_conflict(
        self, parsed: _Parsed, eligible: np.ndarray, on_merit: np.ndarray, probabilities: np.ndarray
    ) -> ChannelConflict | None:
        """How the registration was handled. `eligible` rows were scored first (`on_merit` orders them
        by win probability); a protected partner was scored last."""
        if parsed.registered is None:
            return None
        registered_id = str(self.context.partner_ids[parsed.registered])
        failed = [constraint.name for constraint in parsed.constraints if not constraint.passes[parsed.registered]]
        # Its rank on win probability alone among the eligible candidates; None if it fails a constraint.
        merit_rank: int | None
        if parsed.protected:
            beaten_by = int(np.sum(probabilities[: len(eligible)] > probabilities[-1]))
            merit_rank = None if failed else beaten_by + 1
        else:
            position = np.flatnonzero(eligible[on_merit] == parsed.registered)
            merit_rank = int(position[0]) + 1 if len(position) else None
        if parsed.protected:
            displaced = (
                str(self.context.partner_ids[eligible[on_merit[0]]]) if len(on_merit) and merit_rank != 1 else None
            )
            message = f"deal registered by {registered_id}: protected at rank 1"
            message += f" although it fails {', '.join(failed)}" if failed else ""
            return ChannelConflict(
                registered_partner_id=registered_id,
                status="protected",
                merit_rank=merit_rank,
                displaced_partner_id=displaced,
                message=message,
            )
        left_out = f"left out: fails {', '.join(failed)}" if failed else "not among the retrieved candidates"
        return ChannelConflict(
            registered_partner_id=registered_id,
            status="overridden",
            merit_rank=merit_rank,
            displaced_partner_id=None,
            message=f"registration by {registered_id} overridden: ranked on merit "
            + (f"(rank {merit_rank})" if merit_rank is not None else f"({left_out})"),
        )
