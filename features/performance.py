"""Realised partner performance and white space: pure functions over the ecosystem tables.

What a recruiter can observe, never the generator's latent truth:
- `first_year_performance`: per partner, attempts, wins, won revenue and a smoothed win rate over
  its first observed year (from signing, or from the start of the history for partners signed
  before it), and the days from signing to its first win (right-censored).
- `win_rates_by`: a partner's smoothed win rate per product or per region over chosen attempts.
- `white_space`: product x region cells ranked by unmet demand, each with the partner to recruit.

Attempts are dated by their deal's `created_at`; a co-sell team's won amount is split evenly
between its members.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import schema
from features.prospects import partners_as_prospects
from features.synthetic import recent_attempt_counts

MEASURED_DAYS = 365  # the measured year
PRIOR_STRENGTH = 10.0  # pseudo-attempts at the ecosystem-wide win rate (empirical-Bayes smoothing)
WHITE_SPACE_LOOKBACK_DAYS = 365
WHITE_SPACE_MIN_DEALS = 20  # cells with fewer deals do not set the benchmark unmet share
WELL_SERVED_QUANTILE = 0.25  # the benchmark: the unmet share of the best-served quarter of cells
DAYS_PER_MONTH = 30.0

# Columns of the attempts and performance tables (ecosystem columns live in features.schema).
REVENUE = "won_revenue"  # USD
ATTEMPTS = "attempts"
WINS = "wins"
WIN_RATE = "win_rate"  # smoothed, in (0, 1)
MEASURED_FROM = "measured_from"
TENURE_AT_START = "tenure_at_start_days"
COMPLETE = "complete"  # the measured year lies inside the history
DAYS_TO_FIRST_WIN = "days_to_first_win"  # from signing; the censoring time when no win was seen
FIRST_WIN_SEEN = "first_win_seen"
SIGNED_IN_HISTORY = "signed_in_history"  # signed after the history starts: time to first win is observable
PRODUCT = "product"
CELL_REGION = "region"


def attempts_table(ecosystem: schema.Ecosystem) -> pd.DataFrame:
    """One row per outcomes row: partner, deal, won, closed_at, the deal's created_at, region,
    products cell, segment and amount, plus REVENUE (the won amount, split within a team)."""
    deals = ecosystem.deals[
        [schema.DEAL_ID, schema.CREATED_AT, schema.DEAL_REGION, schema.DEAL_PRODUCTS, schema.SEGMENT, schema.AMOUNT]
    ]
    attempts = ecosystem.outcomes.merge(deals, on=schema.DEAL_ID, how="inner", validate="many_to_one")
    team = attempts[schema.TEAM_ID].fillna("")
    team_size = team.map(team[team != ""].value_counts()).fillna(1.0).to_numpy()
    attempts[REVENUE] = attempts[schema.AMOUNT] * attempts[schema.WON].astype(float) / team_size
    return attempts


def smoothed_rate(wins: np.ndarray | pd.Series, attempts: np.ndarray | pd.Series, prior: float) -> np.ndarray:
    """(wins + k prior) / (attempts + k) with k = PRIOR_STRENGTH: a win rate in (0, 1) that shrinks
    partners with few attempts towards `prior`."""
    return (np.asarray(wins, dtype=float) + PRIOR_STRENGTH * prior) / (
        np.asarray(attempts, dtype=float) + PRIOR_STRENGTH
    )


def first_year_performance(ecosystem: schema.Ecosystem) -> pd.DataFrame:
    """Per partner (rows as the partners table): its measured year and what it realised in it.

    The measured year starts at signing, or at the first deal of the history for partners signed
    before it (TENURE_AT_START says how long they had been partners then), and lasts 365 days;
    COMPLETE marks years that end inside the history. Columns: PARTNER_ID, MEASURED_FROM,
    TENURE_AT_START (days >= 0), ATTEMPTS, WINS, REVENUE (USD), WIN_RATE (smoothed towards the
    ecosystem win rate), COMPLETE, DAYS_TO_FIRST_WIN (> 0: to the first won deal's close, else to
    the end of observation), FIRST_WIN_SEEN and SIGNED_IN_HISTORY.
    """
    partners = ecosystem.partners[[schema.PARTNER_ID, schema.JOINED_AT]].reset_index(drop=True)
    attempts = attempts_table(ecosystem)
    history_start = ecosystem.deals[schema.CREATED_AT].min()
    history_end = ecosystem.deals[schema.CREATED_AT].max()
    observed_until = ecosystem.outcomes[schema.CLOSED_AT].max() if len(ecosystem.outcomes) else history_end
    measured_from = partners[schema.JOINED_AT].clip(lower=history_start)
    start_by_partner = pd.Series(measured_from.to_numpy(), index=partners[schema.PARTNER_ID])
    attempt_start = attempts[schema.PARTNER_ID].map(start_by_partner)
    in_year = (attempts[schema.CREATED_AT] >= attempt_start) & (
        attempts[schema.CREATED_AT] < attempt_start + pd.Timedelta(days=MEASURED_DAYS)
    )
    measured = attempts[in_year].groupby(schema.PARTNER_ID)
    counts = measured.size().reindex(partners[schema.PARTNER_ID], fill_value=0).to_numpy()
    wins = measured[schema.WON].sum().reindex(partners[schema.PARTNER_ID], fill_value=0).to_numpy()
    revenue = measured[REVENUE].sum().reindex(partners[schema.PARTNER_ID], fill_value=0.0).to_numpy()
    prior = float(attempts[schema.WON].mean()) if len(attempts) else 0.0
    first_win = (
        attempts[attempts[schema.WON]]
        .groupby(schema.PARTNER_ID)[schema.CLOSED_AT]
        .min()
        .reindex(partners[schema.PARTNER_ID])
        .to_numpy()
    )
    seen = ~pd.isna(first_win)
    until = np.where(seen, first_win, np.datetime64(observed_until))
    days_to_first_win = (pd.to_datetime(until) - partners[schema.JOINED_AT].to_numpy()) / pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            schema.PARTNER_ID: partners[schema.PARTNER_ID],
            MEASURED_FROM: measured_from,
            TENURE_AT_START: ((measured_from - partners[schema.JOINED_AT]) / pd.Timedelta(days=1)).to_numpy(),
            ATTEMPTS: counts,
            WINS: wins.astype(np.int64),
            REVENUE: revenue,
            WIN_RATE: smoothed_rate(wins, counts, prior),
            COMPLETE: (measured_from + pd.Timedelta(days=MEASURED_DAYS) <= history_end).to_numpy(),
            DAYS_TO_FIRST_WIN: np.maximum(np.asarray(days_to_first_win, dtype=float), 0.0),
            FIRST_WIN_SEEN: seen,
            SIGNED_IN_HISTORY: (partners[schema.JOINED_AT] >= history_start).to_numpy(),
        }
    )


def explode_cells(attempts: pd.DataFrame) -> pd.DataFrame:
    """Attempts (or deals) with one row per product of the deal, in a PRODUCT column."""
    exploded = attempts.assign(**{PRODUCT: attempts[schema.DEAL_PRODUCTS].str.split(schema.LIST_SEPARATOR)})
    return exploded.explode(PRODUCT, ignore_index=True)


def win_rates_by(attempts: pd.DataFrame, key: str) -> pd.DataFrame:
    """Smoothed win rate per (partner, `key`) over `attempts` (from `attempts_table`, or exploded by
    `explode_cells` for key PRODUCT; key schema.DEAL_REGION for regions). Columns PARTNER_ID, key,
    ATTEMPTS, WINS, WIN_RATE; the prior is the win rate of all `attempts` with that key value."""
    grouped = attempts.groupby([schema.PARTNER_ID, key])[schema.WON].agg(["size", "sum"]).reset_index()
    grouped.columns = [schema.PARTNER_ID, key, ATTEMPTS, WINS]
    prior = attempts.groupby(key)[schema.WON].mean()
    grouped[WIN_RATE] = smoothed_rate(grouped[WINS], grouped[ATTEMPTS], grouped[key].map(prior).to_numpy())
    return grouped


def white_space(ecosystem: schema.Ecosystem, lookback_days: int = WHITE_SPACE_LOOKBACK_DAYS) -> pd.DataFrame:
    """Product x region cells ranked by unmet demand over the last `lookback_days` of deals.

    A deal is unmet when nobody won it or every partner that worked it was past its declared
    capacity (attempts in the 30 days before the deal / capacity > 1). A cell's score,
    `excess_unmet_per_month`, is its unmet deals per 30 days beyond what the best-served quarter of
    cells leaves unmet at the same deal flow: demand that the skill and capacity present do not
    meet. Columns: PRODUCT, CELL_REGION, deals_per_month, unmet_share, excess_unmet_per_month,
    serving_partners (operating there and selling the product), capacity_per_month (their declared
    capacity, each partner's split evenly over its cells), win_rate (deals won), and the partner to
    recruit: recruit_certification_level (median level of the cell's winners), recruit_capacity
    (deals per 30 days, >= 1), typical_amount (median deal, USD) and typical_segment. Best first.
    """
    as_of = ecosystem.deals[schema.CREATED_AT].max()
    recent = ecosystem.deals[ecosystem.deals[schema.CREATED_AT] > as_of - pd.Timedelta(days=lookback_days)]
    attempts = attempts_table(ecosystem)
    attempts = attempts[attempts[schema.DEAL_ID].isin(recent[schema.DEAL_ID])]
    capacity = attempts[schema.PARTNER_ID].map(ecosystem.partners.set_index(schema.PARTNER_ID)[schema.CAPACITY])
    load = recent_attempt_counts(ecosystem, attempts[schema.PARTNER_ID], attempts[schema.CREATED_AT]) / np.maximum(
        capacity.to_numpy(dtype=float), 1.0
    )
    per_deal = (
        attempts.assign(overloaded=load > 1.0)
        .groupby(schema.DEAL_ID)[[schema.WON, "overloaded"]]
        .agg({schema.WON: "any", "overloaded": "all"})
    )
    deals = recent.join(per_deal, on=schema.DEAL_ID)
    won = deals[schema.WON].fillna(False).astype(bool)
    deals = deals.assign(unmet=~won | deals["overloaded"].fillna(False).astype(bool), won_deal=won)
    cells = explode_cells(deals).groupby([PRODUCT, schema.DEAL_REGION])
    table = cells.agg(
        deals=("unmet", "size"),
        unmet=("unmet", "sum"),
        win_rate=("won_deal", "mean"),
        typical_amount=(schema.AMOUNT, "median"),
        typical_segment=(schema.SEGMENT, lambda values: values.mode().iloc[0]),
    ).reset_index()
    table = table.rename(columns={schema.DEAL_REGION: CELL_REGION})
    months = lookback_days / DAYS_PER_MONTH
    table["deals_per_month"] = table["deals"] / months
    table["unmet_share"] = table["unmet"] / table["deals"]
    established = table[table["deals"] >= WHITE_SPACE_MIN_DEALS]
    benchmark = float(np.quantile((established if len(established) else table)["unmet_share"], WELL_SERVED_QUANTILE))
    table["excess_unmet_per_month"] = np.maximum(table["unmet"] - benchmark * table["deals"], 0.0) / months

    supply = _cell_supply(ecosystem.partners)
    table = table.merge(supply, on=[PRODUCT, CELL_REGION], how="left").fillna(
        {"serving_partners": 0, "capacity_per_month": 0.0}
    )
    table["serving_partners"] = table["serving_partners"].astype(np.int64)
    winners = explode_cells(attempts[attempts[schema.WON]])
    levels = ecosystem.partners.set_index(schema.PARTNER_ID)[schema.CERTIFICATIONS].map(schema.parse_certifications)
    winners["level"] = [
        levels[partner].get(product, 0)
        for partner, product in zip(winners[schema.PARTNER_ID], winners[PRODUCT], strict=True)
    ]
    winner_level = winners.groupby([PRODUCT, schema.DEAL_REGION])["level"].median().rename("winner_level")
    table = table.join(winner_level, on=[PRODUCT, CELL_REGION])
    table["recruit_certification_level"] = np.clip(np.rint(table["winner_level"].fillna(1.0)), 1, schema.MAX_CERT_LEVEL)
    table["recruit_certification_level"] = table["recruit_certification_level"].astype(np.int64)
    table["recruit_capacity"] = np.maximum(np.ceil(table["excess_unmet_per_month"]), 1).astype(np.int64)
    columns = [
        PRODUCT,
        CELL_REGION,
        "deals_per_month",
        "unmet_share",
        "excess_unmet_per_month",
        "serving_partners",
        "capacity_per_month",
        "win_rate",
        "recruit_certification_level",
        "recruit_capacity",
        "typical_amount",
        "typical_segment",
    ]
    ranked = table.sort_values(["excess_unmet_per_month", "deals_per_month"], ascending=False, kind="stable")
    return ranked[columns].reset_index(drop=True)


def _cell_supply(partners: pd.DataFrame) -> pd.DataFrame:
    """Per (product, region): partners selling the product there and their declared capacity, each
    partner's capacity split evenly over its product x region cells."""
    rows: list[tuple[str, str, float]] = []
    for prospect in partners_as_prospects(partners):
        cells = [(product, region) for product in prospect.products for region in prospect.regions]
        rows.extend((product, region, prospect.capacity / len(cells)) for product, region in cells)
    supply = pd.DataFrame(rows, columns=[PRODUCT, CELL_REGION, "capacity_per_month"])
    return (
        supply.groupby([PRODUCT, CELL_REGION])
        .agg(serving_partners=("capacity_per_month", "size"), capacity_per_month=("capacity_per_month", "sum"))
        .reset_index()
    )
