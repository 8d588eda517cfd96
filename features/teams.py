"""Team deals as features: requirement-level sub-deals and the co-sell history of partner pairs.

A team deal needs several products; each member covers some of them. A member's fit for a
requirement is the win model on the single-product sub-deal (`requirement_batch`), so one pair
feature function serves solo routing and teams. Two partners have co-sold when they share a
non-empty `team_id` in outcomes; the history counts such joint deals (and wins) by close time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema
from features.pairs import DealBatch, EventIndex, FeatureError, positions, to_seconds


def requirement_batch(deals: DealBatch, deal_rows: np.ndarray, products: np.ndarray) -> DealBatch:
    """One single-product sub-deal per (deal_rows[i], products[i]): same region, amount, time and
    requirement vector, product mask with only products[i] (index into the context's products)."""
    deal_rows = np.asarray(deal_rows, dtype=np.int64)
    mask = np.zeros((deal_rows.size, deals.product_mask.shape[1]), dtype=bool)
    mask[np.arange(deal_rows.size), np.asarray(products, dtype=np.int64)] = True
    return DealBatch(
        region_index=deals.region_index[deal_rows],
        product_mask=mask,
        amount=deals.amount[deal_rows],
        created_seconds=deals.created_seconds[deal_rows],
        vectors=deals.vectors[deal_rows],
    )


@dataclass(frozen=True)
class CoSellHistory:
    """Joint deals of partner pairs, known from their close time on. Sparse: only the pairs that
    have co-sold are stored, so memory follows the team history, not n^2 partner pairs (100k
    partners are fine). `pair_keys`: (m,) sorted int64 `min * n + max` of the two partner positions
    (n = `partner_count`); `events` is keyed by a pair's row in `pair_keys`, values (joint deals,
    joint wins)."""

    pair_keys: np.ndarray
    events: EventIndex
    partner_count: int

    @classmethod
    def build(cls, outcomes: pd.DataFrame, partner_index: pd.Index) -> CoSellHistory:
        """From outcomes rows sharing a non-empty TEAM_ID; `partner_index` gives the positions."""
        teams = outcomes[outcomes[schema.TEAM_ID].fillna("").astype(str) != ""]
        member = positions(teams[schema.PARTNER_ID].astype(str), partner_index, schema.PARTNER_ID)
        frame = pd.DataFrame(
            {
                "team": teams[schema.TEAM_ID].astype(str).to_numpy(),
                "member": member,
                "seconds": to_seconds(teams[schema.CLOSED_AT]),
                "won": teams[schema.WON].to_numpy(dtype=np.float64),
            }
        )
        pairs = frame.merge(frame[["team", "member"]], on="team", suffixes=("", "_other"))
        pairs = pairs[pairs["member"] < pairs["member_other"]]
        n = len(partner_index)
        keys = pairs["member"].to_numpy(dtype=np.int64) * n + pairs["member_other"].to_numpy(dtype=np.int64)
        pair_keys, pair_rows = np.unique(keys, return_inverse=True)
        values = np.column_stack([np.ones(len(pairs)), pairs["won"].to_numpy()])
        events = EventIndex.build(pair_rows.astype(np.int64), pairs["seconds"].to_numpy(dtype=np.int64), values)
        return cls(pair_keys, events, n)

    def joint(self, first: np.ndarray, second: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(q, 2) float64 (joint deals, joint wins) of pairs (first[i], second[i]) closed before
        seconds[i]; 0 for a partner with itself and for pairs that never co-sold."""
        first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        keys = np.minimum(first, second) * self.partner_count + np.maximum(first, second)
        rows = np.minimum(np.searchsorted(self.pair_keys, keys), max(self.pair_keys.size - 1, 0))
        known = (first != second) & (self.pair_keys.size > 0)
        known[known] = self.pair_keys[rows[known]] == keys[known]
        sums = np.zeros((keys.size, 2))
        if known.any():
            sums[known] = self.events.sum_before(rows[known], np.asarray(seconds, dtype=np.int64)[known])
        return sums


def team_members(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The member rows of team deals (non-empty COVERS_PRODUCT), columns as outcomes; empty frame
    when the ecosystem has no team deals."""
    if schema.COVERS_PRODUCT not in outcomes.columns:
        return outcomes.iloc[:0]
    return outcomes[outcomes[schema.COVERS_PRODUCT].fillna("").astype(str) != ""]


def uncovered_requirement(product: str) -> FeatureError:
    """The domain error for a requirement no eligible partner covers (maps to 422 at the edge)."""
    return FeatureError(schema.DEAL_PRODUCTS, f"no eligible partner covers the requirement {product!r}")
