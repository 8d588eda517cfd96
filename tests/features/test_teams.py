"""Co-sell history of partner pairs: point in time, order-free, sparse at 100k partners."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.teams import CoSellHistory


def _outcomes(partner_count: int) -> tuple[pd.DataFrame, pd.Index]:
    ids = pd.Index([f"P{i:06d}" for i in range(partner_count)])
    last = partner_count - 1
    rows = [  # (team, partner, closed, won)
        ("T1", 0, "2024-01-10", True),
        ("T1", last, "2024-01-10", True),
        ("T1", 5, "2024-01-10", True),
        ("T2", last, "2024-03-01", False),
        ("T2", 0, "2024-03-01", False),
        ("", 7, "2024-02-01", True),  # a solo attempt is no co-sell
        ("", 8, "2024-02-01", True),
    ]
    outcomes = pd.DataFrame(
        {
            schema.DEAL_ID: [f"D{i}" for i in range(len(rows))],
            schema.TEAM_ID: [team for team, *_ in rows],
            schema.PARTNER_ID: [ids[partner] for _, partner, *_ in rows],
            schema.CLOSED_AT: pd.to_datetime([closed for *_, closed, _ in rows]),
            schema.WON: [won for *_, won in rows],
        }
    )
    return outcomes, ids


@pytest.mark.parametrize("partner_count", [10, 100_000])
def test_joint_history_counts_pairs_before_a_time_in_either_order(partner_count: int) -> None:
    outcomes, ids = _outcomes(partner_count)
    history = CoSellHistory.build(outcomes, ids)
    last = partner_count - 1
    assert history.pair_keys.size == 3  # (0, 5), (0, last), (5, last): only pairs that co-sold
    seconds = int(pd.Timestamp("2024-06-01").timestamp())
    between = int(pd.Timestamp("2024-02-01").timestamp())
    first = np.array([0, last, 0, 0, 7, 3, 5])
    second = np.array([last, 0, last, 0, 8, 4, last])
    at = np.array([seconds, seconds, between, seconds, seconds, seconds, seconds])
    joint = history.joint(first, second, at)
    expected = [[2, 1], [2, 1], [1, 1], [0, 0], [0, 0], [0, 0], [1, 1]]
    np.testing.assert_array_equal(joint, np.array(expected, dtype=np.float64))


def test_no_team_history_means_no_joint_deals() -> None:
    outcomes, ids = _outcomes(10)
    history = CoSellHistory.build(outcomes.assign(**{schema.TEAM_ID: ""}), ids)
    assert history.joint(np.array([0, 1]), np.array([9, 2]), np.array([2_000_000_000, 0])).tolist() == [[0, 0], [0, 0]]
