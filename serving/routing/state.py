"""Load-time half of routing: the model bundle's pieces checked and precomputed into an immutable
`RoutingState` that every request reads (and nothing writes).

Precomputed once per bundle:
- the feature context frozen at the history end (history sums looked up for every partner);
- each partner's load ratio (deals in the load window / declared capacity, deal-independent);
- per region, the history shortlist logits: the model's win log-odds of every partner operating
  there for a single-product prototype deal of each product (see `history_shortlist_logits`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
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
    frozen_at,
    pair_feature_matrix,
    product_mask,
    to_seconds,
)
from serving.schemas import ModelInfo


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
class RegionShortlistLogits:
    """The partners operating in one region and their win log-odds for its prototype deals."""

    rows: np.ndarray  # (n_r,) int64 context rows
    logits: np.ndarray  # (n_r, P) float32: column p for a single-product prototype deal of product p


@dataclass(frozen=True)
class RoutingState:
    """Everything a request reads, built once per bundle by `build_routing_state`. n partners in
    `context` order ("rows"), P products, R regions. Arrays built here are read-only."""

    model: ScoringModel
    context: FeatureContext  # frozen at `as_of_seconds`
    index: PartnerIndex
    encoder: Encoder
    model_info: ModelInfo
    settings: RoutingSettings
    as_of_seconds: int  # every request is routed as of this time (just after the history end)
    index_rows: np.ndarray  # (len(index),) int64: context row of each index position
    partner_names: np.ndarray  # (n,) str, "" when the partner table lacks one
    region_positions: Mapping[str, int]  # region name -> position in context.regions
    product_positions: Mapping[str, int]  # product name -> position in context.products
    load_ratio: np.ndarray  # (n,) float64 >= 0, 30-day deals / declared capacity
    shortlist_logits: Mapping[int, RegionShortlistLogits]  # region position -> (regions without partners absent)


def single_deal(as_of_seconds: int, region: int, products: np.ndarray, amount: float, vector: np.ndarray) -> DealBatch:
    """One deal created at `as_of_seconds`. `products` (P,) bool, `amount` USD > 0, `vector` (d,) float32."""
    return DealBatch(
        region_index=np.array([region], dtype=np.int64),
        product_mask=products.reshape(1, -1),
        amount=np.array([amount], dtype=np.float64),
        created_seconds=np.array([as_of_seconds], dtype=np.int64),
        vectors=np.asarray(vector, dtype=np.float32).reshape(1, -1),
    )


def single_deal_features(context: FeatureContext, deal: DealBatch, rows: np.ndarray) -> np.ndarray:
    """(len(rows), F) float32 features of the one-deal batch `deal` against partner `rows`, FEATURE_COLUMNS order."""
    return pair_feature_matrix(context, deal, np.zeros(len(rows), dtype=np.int64), rows)


def build_routing_state(
    model: ScoringModel,
    context: FeatureContext,
    index: PartnerIndex,
    encoder: Encoder,
    partners: pd.DataFrame,
    history_deals: pd.DataFrame,
    model_info: ModelInfo,
    settings: RoutingSettings,
) -> RoutingState:
    """Check that the pieces fit together and precompute what requests share.

    `partners` and `history_deals` are the bundle's partner and deal tables (schema columns);
    `context` and `index` hold the same partners (in any order). Raises ValueError on a mismatch.
    """
    check_pieces(model, context, index, encoder)
    # Everything a partner had done by history_end counts: pair_features sees events strictly before.
    as_of_seconds = int(to_seconds([context.history_end])[0]) + 1
    frozen = frozen_at(context, as_of_seconds)
    names = partners.set_index(schema.PARTNER_ID)[schema.PARTNER_NAME]
    return RoutingState(
        model=model,
        context=frozen,
        index=index,
        encoder=encoder,
        model_info=model_info,
        settings=settings,
        as_of_seconds=as_of_seconds,
        index_rows=_read_only(
            np.array([context.partner_position[str(pid)] for pid in index.partner_ids], dtype=np.int64)
        ),
        partner_names=_read_only(names.reindex(context.partner_ids).fillna("").astype(str).to_numpy()),
        region_positions=MappingProxyType({region: position for position, region in enumerate(context.regions)}),
        product_positions=MappingProxyType({product: position for position, product in enumerate(context.products)}),
        load_ratio=_read_only(partner_load_ratio(frozen, as_of_seconds)),
        shortlist_logits=MappingProxyType(
            history_shortlist_logits(model, frozen, as_of_seconds, encoder, history_deals, settings.prototype_deals)
        ),
    )


def check_pieces(model: ScoringModel, context: FeatureContext, index: PartnerIndex, encoder: Encoder) -> None:
    """Raise ValueError unless the model, context, index and encoder fit together."""
    if len(index) != len(context.partner_ids):
        raise ValueError(f"the index holds {len(index)} partners, the feature context {len(context.partner_ids)}")
    if tuple(model.feature_names) != FEATURE_COLUMNS:
        raise ValueError(f"the model takes features {model.feature_names}, routing computes {FEATURE_COLUMNS}")
    if encoder.dimension != context.partner_vectors.shape[1]:
        raise ValueError(
            f"encoder {encoder.name} gives {encoder.dimension}-d vectors, "
            f"the partners were embedded in {context.partner_vectors.shape[1]}-d"
        )


def partner_load_ratio(context: FeatureContext, as_of_seconds: int) -> np.ndarray:
    """(n,) float64: each partner's deals in the load window before `as_of_seconds` / declared capacity."""
    rows = np.arange(len(context.partner_ids), dtype=np.int64)
    first_product = np.arange(len(context.products)) == 0
    any_deal = single_deal(as_of_seconds, 0, first_product, 1.0, context.partner_vectors[0])
    return single_deal_features(context, any_deal, rows)[:, FEATURE_COLUMNS.index(LOAD_RATIO)].astype(np.float64)


def history_shortlist_logits(
    model: ScoringModel,
    context: FeatureContext,
    as_of_seconds: int,
    encoder: Encoder,
    deals: pd.DataFrame,
    prototype_deals: int,
) -> dict[int, RegionShortlistLogits]:
    """Per region with partners: the win log-odds of its partners for a single-product prototype
    deal of each product in that region, created at `as_of_seconds`.

    A prototype deal has the median amount of the cell's deals and, as its text vector, the mean
    of up to `prototype_deals` recent requirement embeddings of the cell (partner . mean = the
    partner's mean similarity to those deals). A cell without deals borrows the product's deals
    in other regions.
    """
    n_products = len(context.products)
    region_positions = {region: position for position, region in enumerate(context.regions)}
    recent = deals.sort_values(schema.CREATED_AT, ascending=False)
    deal_products = product_mask(recent[schema.DEAL_PRODUCTS].astype(str).tolist(), context.products)
    deal_regions = recent[schema.DEAL_REGION].astype(str).map(region_positions).fillna(-1).to_numpy()
    amounts = recent[schema.AMOUNT].to_numpy(dtype=np.float64)
    overall_median = float(np.median(amounts)) if len(amounts) else 1.0

    cells: dict[tuple[int, int], np.ndarray] = {}
    for region in range(len(context.regions)):
        for product in range(n_products):
            in_cell = np.flatnonzero((deal_regions == region) & deal_products[:, product])
            cells[(region, product)] = in_cell if len(in_cell) else np.flatnonzero(deal_products[:, product])
    sampled = np.unique(np.concatenate([rows[:prototype_deals] for rows in cells.values()]))
    vectors = encoder.encode(recent[schema.REQUIREMENT_TEXT].astype(str).to_numpy()[sampled].tolist())
    vector_of = {int(deal_row): vectors[position] for position, deal_row in enumerate(sampled)}

    one_hot = np.eye(n_products, dtype=bool)
    logits: dict[int, RegionShortlistLogits] = {}
    for region in range(len(context.regions)):
        rows = np.flatnonzero(context.partner_regions[:, region])
        if len(rows) == 0:
            continue
        by_product = np.zeros((len(rows), n_products), dtype=np.float32)
        for product in range(n_products):
            in_cell = cells[(region, product)]
            prototype = (
                np.mean([vector_of[int(row)] for row in in_cell[:prototype_deals]], axis=0)
                if len(in_cell)
                else np.zeros(encoder.dimension, dtype=np.float32)
            )
            amount = float(np.median(amounts[in_cell])) if len(in_cell) else overall_median
            deal = single_deal(as_of_seconds, region, one_hot[product], amount, prototype)
            by_product[:, product] = _log_odds(model.predict_win_probability(single_deal_features(context, deal, rows)))
        logits[region] = RegionShortlistLogits(rows=_read_only(rows), logits=_read_only(by_product))
    return logits


def _log_odds(probability: np.ndarray) -> np.ndarray:
    """(n,) probabilities -> (n,) log-odds, clipped away from 0 and 1."""
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(clipped / (1 - clipped)))


def _read_only(array: np.ndarray) -> np.ndarray:
    """`array` itself, made read-only: the state is shared by every request."""
    array.flags.writeable = False
    return array
