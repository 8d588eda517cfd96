"""Realised performance and white space on a hand-made ecosystem whose every number is known."""

from __future__ import annotations

import pandas as pd
import pytest

from features import schema
from features.performance import (
    ATTEMPTS,
    COMPLETE,
    DAYS_TO_FIRST_WIN,
    FIRST_WIN_SEEN,
    PRIOR_STRENGTH,
    REVENUE,
    SIGNED_IN_HISTORY,
    TENURE_AT_START,
    WIN_RATE,
    WINS,
    first_year_performance,
    white_space,
)

DEALS = [  # deal, created, products, region, amount, [(partner, won, team)]
    ("D1", "2024-01-10", "firewall", "na-east", 10_000.0, [("P1", True, "")]),
    ("D2", "2024-04-01", "firewall", "na-east", 20_000.0, [("P1", False, ""), ("P2", True, "")]),
    ("D3", "2024-05-01", "firewall|sd-wan", "na-east", 40_000.0, [("P1", True, "T1"), ("P2", True, "T1")]),
    ("D4", "2025-02-01", "firewall", "na-east", 5_000.0, [("P1", True, "")]),
    ("D5", "2025-05-01", "storage", "dach", 8_000.0, [("P3", False, "")]),
    ("D6", "2025-04-01", "collaboration", "uk-ie", 1_000.0, [("P4", True, "")]),
    ("D7", "2025-04-05", "collaboration", "uk-ie", 1_000.0, [("P4", True, "")]),
    ("D8", "2025-04-10", "collaboration", "uk-ie", 1_000.0, [("P4", True, "")]),
]
JOINED = {"P1": "2023-06-01", "P2": "2024-03-01", "P3": "2025-03-01", "P4": "2024-01-01"}
CAPACITY = {"P1": 10, "P2": 10, "P3": 10, "P4": 1}


def hand_ecosystem() -> schema.Ecosystem:
    partners = pd.DataFrame(
        {
            schema.PARTNER_ID: list(JOINED),
            schema.PARTNER_NAME: list(JOINED),
            schema.PROFILE_TEXT: ["firewall", "firewall", "storage", "collaboration"],
            schema.HOME_REGION: ["na-east", "na-east", "dach", "uk-ie"],
            schema.PARTNER_REGIONS: ["na-east", "na-east", "dach", "uk-ie"],
            schema.CERTIFICATIONS: ["firewall:3", "firewall:1", "", "collaboration:2"],
            schema.TIER: ["gold"] * 4,
            schema.CAPACITY: list(CAPACITY.values()),
            schema.JOINED_AT: pd.to_datetime(list(JOINED.values())),
        }
    )
    created = pd.to_datetime([deal[1] for deal in DEALS])
    deals = pd.DataFrame(
        {
            schema.DEAL_ID: [deal[0] for deal in DEALS],
            schema.CREATED_AT: created,
            schema.SEGMENT: ["smb"] * len(DEALS),
            schema.DEAL_REGION: [deal[3] for deal in DEALS],
            schema.DEAL_PRODUCTS: [deal[2] for deal in DEALS],
            schema.REQUIREMENT_TEXT: ["need it"] * len(DEALS),
            schema.AMOUNT: [deal[4] for deal in DEALS],
            schema.REGISTERED_PARTNER_ID: [""] * len(DEALS),
        }
    )
    outcomes = pd.DataFrame(
        [
            (deal[0], partner, won, pd.Timestamp(deal[1]) + pd.Timedelta(days=30), team)
            for deal in DEALS
            for partner, won, team in deal[5]
        ],
        columns=[schema.DEAL_ID, schema.PARTNER_ID, schema.WON, schema.CLOSED_AT, schema.TEAM_ID],
    )
    empty = pd.DataFrame()
    return schema.Ecosystem(partners, deals, outcomes, empty, empty)


def test_first_year_performance_counts_the_measured_year_only() -> None:
    performance = first_year_performance(hand_ecosystem()).set_index(schema.PARTNER_ID)
    prior = 8 / 10  # every outcomes row: 8 wins in 10 attempts
    p1, p2, p3 = performance.loc["P1"], performance.loc["P2"], performance.loc["P3"]
    # P1 signed before the history: measured from its start (2024-01-10); D4 falls after the year.
    assert p1[TENURE_AT_START] == pytest.approx(223.0)
    assert (p1[ATTEMPTS], p1[WINS]) == (3, 2) and p1[REVENUE] == pytest.approx(10_000 + 40_000 / 2)
    assert p1[WIN_RATE] == pytest.approx((2 + PRIOR_STRENGTH * prior) / (3 + PRIOR_STRENGTH))
    assert p1[COMPLETE] and not p1[SIGNED_IN_HISTORY]
    assert p2[TENURE_AT_START] == 0 and (p2[ATTEMPTS], p2[WINS]) == (2, 2) and p2[COMPLETE]
    assert p2[DAYS_TO_FIRST_WIN] == pytest.approx(61.0) and p2[FIRST_WIN_SEEN] and p2[SIGNED_IN_HISTORY]
    # P3 has not won yet: censored at the last close (2025-05-31), 91 days after signing.
    assert not p3[COMPLETE] and not p3[FIRST_WIN_SEEN] and p3[DAYS_TO_FIRST_WIN] == pytest.approx(91.0)


def test_white_space_ranks_unmet_cells_first_with_the_partner_to_recruit() -> None:
    table = white_space(hand_ecosystem(), lookback_days=600)
    cells = {(row.product, row.region): row for row in table.itertuples()}
    # storage@dach: its one deal was lost. collaboration@uk-ie: D8 went to a partner past capacity
    # (two deals in the 30 days before, capacity 1), so 1 of 3 is unmet.
    assert cells[("storage", "dach")].unmet_share == 1.0
    assert cells[("collaboration", "uk-ie")].unmet_share == pytest.approx(1 / 3)
    assert cells[("firewall", "na-east")].unmet_share == 0.0
    # One excess unmet deal each (the benchmark share is 0 here); the larger deal flow ranks first.
    assert list(zip(table["product"][:2], table["region"][:2], strict=True)) == [
        ("collaboration", "uk-ie"),
        ("storage", "dach"),
    ]
    assert table["excess_unmet_per_month"].is_monotonic_decreasing
    assert cells[("storage", "dach")].excess_unmet_per_month == pytest.approx(1 / (600 / 30))
    assert cells[("collaboration", "uk-ie")].recruit_certification_level == 2
    assert (table["recruit_capacity"] >= 1).all()
    assert cells[("firewall", "na-east")].serving_partners == 2
    assert cells[("firewall", "na-east")].capacity_per_month == pytest.approx(20.0)
