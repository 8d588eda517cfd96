"""Lookalike CSV validation and the YC converter, on hand-made files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.io import DataError
from features.lookalike import CHOSEN_BY, DATE, ENTITY_ID, read_lookalike, yc_lookalike


def test_read_lookalike_parses_dates_and_drops_duplicate_pairs(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("entity_id,text,date,chosen_by\na,alpha,2020-01-01,X\na,alpha,2020-01-01,X\na,alpha,2020-01-01,Y\n")
    rows = read_lookalike(path)
    assert len(rows) == 2 and rows[DATE].dtype.kind == "M" and set(rows[CHOSEN_BY]) == {"X", "Y"}


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        ("a,alpha,2020-01-01,X\nb,,2020-01-01,X\n", "line 3, column text", "empty cell"),
        ("a,alpha,someday,X\n", "line 2, column date", "not a date"),
        ("a,alpha,2020-01-01,X\na,beta,2020-01-01,Y\n", "line 2, column entity_id", "differ in text or date"),
    ],
)
def test_bad_lookalike_rows_are_named(tmp_path: Path, body: str, where: str, reason: str) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("entity_id,text,date,chosen_by\n" + body)
    with pytest.raises(DataError, match=reason) as caught:
        read_lookalike(path)
    assert where in str(caught.value)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("entity_id,text,date\na,alpha,2020-01-01\n")
    with pytest.raises(DataError, match="chosen_by"):
        read_lookalike(path)


def test_yc_converter_keeps_investors_with_a_portfolio_before_the_cutoff(tmp_path: Path) -> None:
    source = tmp_path / "Startups.csv"
    pd.DataFrame(
        {
            "Company": ["A", "B", "C", "D", "E"],
            "Description": ["Payments API.", "Food delivery.", "Payments for shops.", None, "Chat app."],
            "Categories": ["Fintech", None, "Fintech, Payments", None, "Messaging"],
            "Y Combinator Year": [2010, 2010, 2011, 2012, 2012],
            "Investors": [
                "Big Fund, Y Combinator",
                "Big Fund, Small Angel",
                "Big Fund, Y Combinator",
                "Big Fund",
                "Big Fund, Small Angel",
            ],
        }
    ).to_csv(source, index=False)
    rows = yc_lookalike(source, tmp_path / "out.csv", cutoff="2012-01-01", min_portfolio=2)
    # Small Angel backed one company before 2012; D has no text; Y Combinator is never a chooser.
    assert set(zip(rows[ENTITY_ID], rows[CHOSEN_BY], strict=True)) == {
        ("A", "Big Fund"),
        ("B", "Big Fund"),
        ("C", "Big Fund"),
        ("E", "Big Fund"),
    }
    written = read_lookalike(tmp_path / "out.csv")
    assert written.loc[written[ENTITY_ID] == "C", "text"].item() == "Payments for shops. Tags: Fintech, Payments."
    assert written.loc[written[ENTITY_ID] == "E", DATE].item() == pd.Timestamp("2012-01-01")
