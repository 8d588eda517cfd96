"""Global batch assignment: many deals at once under partner capacities (HiGHS MILP), against
greedy one-by-one routing of the same batch.

Deal d may go to its candidates `candidates[d, c]` (partner rows, -1 padding) with win probability
`probability[d, c]`. The plan maximises expected wins = sum of the chosen probabilities, each deal
to at most one partner, each partner to at most `capacity` deals; with `exposure_share` s, at
least s of the assigned deals go to `emerging` partners (newer and smaller ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from models.solver import solve_milp

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Plan:
    partner_rows: IntArray  # (D,) assigned partner row per deal, -1 when unassigned
    probability: FloatArray  # (D,) win probability of the assignment, 0 when unassigned
    exposure: IntArray  # (N,) deals per partner

    @property
    def expected_wins(self) -> float:
        return float(self.probability.sum())

    def emerging_share(self, emerging: npt.NDArray[np.bool_]) -> float:
        """Share of assigned deals that went to emerging partners, in [0, 1]."""
        return float(self.exposure[emerging].sum() / max(self.exposure.sum(), 1))


def _plan(candidates: IntArray, probability: FloatArray, choice: IntArray, partner_count: int) -> Plan:
    deals = np.arange(candidates.shape[0])
    assigned = choice >= 0
    rows = np.where(assigned, candidates[deals, np.maximum(choice, 0)], -1)
    won = np.where(assigned, probability[deals, np.maximum(choice, 0)], 0.0)
    return Plan(rows, won, np.bincount(rows[assigned], minlength=partner_count).astype(np.int64))


def assign_globally(
    candidates: IntArray,
    probability: FloatArray,
    capacity: IntArray,
    emerging: npt.NDArray[np.bool_] | None = None,
    exposure_share: float = 0.0,
) -> Plan:
    """The plan of maximum expected wins (MILP over the (deal, candidate) edges; SolverError when
    HiGHS finds no optimum, e.g. an exposure share the candidates cannot meet)."""
    deal, slot = np.nonzero(candidates >= 0)
    partner = candidates[deal, slot]
    edges, partner_count = deal.size, capacity.size
    blocks = [
        sparse.csr_matrix((np.ones(edges), (deal, np.arange(edges))), shape=(candidates.shape[0], edges)),
        sparse.csr_matrix((np.ones(edges), (partner, np.arange(edges))), shape=(partner_count, edges)),
    ]
    row_lower = [np.full(candidates.shape[0], -np.inf), np.full(partner_count, -np.inf)]
    row_upper = [np.ones(candidates.shape[0]), capacity.astype(np.float64)]
    if exposure_share > 0:
        if emerging is None:
            raise ValueError("an exposure share needs the emerging partners")
        # sum over emerging edges - share * sum over all edges >= 0
        blocks.append(sparse.csr_matrix((emerging[partner].astype(np.float64) - exposure_share)[None, :]))
        row_lower.append(np.zeros(1))
        row_upper.append(np.full(1, np.inf))
    solution = solve_milp(
        probability[deal, slot],
        np.zeros(edges),
        np.ones(edges),
        np.ones(edges, dtype=bool),
        sparse.vstack(blocks),
        np.concatenate(row_lower),
        np.concatenate(row_upper),
    )
    choice = np.full(candidates.shape[0], -1, dtype=np.int64)
    chosen = solution.values > 0.5
    choice[deal[chosen]] = slot[chosen]
    return _plan(candidates, probability, choice, partner_count)


def assign_greedily(candidates: IntArray, probability: FloatArray, capacity: IntArray) -> Plan:
    """One deal at a time in batch order, each to its most probable candidate with capacity left."""
    remaining = capacity.astype(np.int64).copy()
    choice = np.full(candidates.shape[0], -1, dtype=np.int64)
    for deal in range(candidates.shape[0]):
        for slot in np.argsort(-np.where(candidates[deal] >= 0, probability[deal], -np.inf)).tolist():
            partner = candidates[deal, slot]
            if partner >= 0 and remaining[partner] > 0:
                remaining[partner] -= 1
                choice[deal] = slot
                break
    return _plan(candidates, probability, choice, capacity.size)


SECONDS_PER_DAY = 86_400.0
EMERGING_TENURE_DAYS = 365.0  # default: a partner that joined less than a year ago is emerging


def emerging_partners(
    joined_seconds: npt.NDArray[np.int64],
    capacity: FloatArray,
    as_of_seconds: int,
    tenure_days: float,
) -> npt.NDArray[np.bool_]:
    """(N,) True for the partners an exposure share favours: joined fewer than `tenure_days` before
    `as_of_seconds`, or declaring a capacity below the median (newer or smaller partners)."""
    tenure = (as_of_seconds - np.asarray(joined_seconds, dtype=np.float64)) / SECONDS_PER_DAY
    return np.asarray((tenure < tenure_days) | (capacity < np.median(capacity)))
