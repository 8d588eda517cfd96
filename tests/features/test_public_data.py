"""features.public_data: the loaders on the real files in shared/data, plus small synthetic error cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import io, public_data
from features.schema import DEALS, ECOSYSTEM_TABLES, OUTCOMES
from training.evaluate import roc_auc

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
XEDUCATION = DATA / "xeducation-lead-scoring" / "Leads.csv"
OLIST = DATA / "olist-marketing-funnel"
MAVEN = DATA / "maven-crm-sales"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared/data is not beside the repository")


# --- X Education ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return public_data.load_xeducation(XEDUCATION)


@needs_data
def test_xeducation_loads_clean(leads: pd.DataFrame) -> None:
    assert len(leads) == 7396
    assert set(leads[public_data.XEDUCATION_LABEL].unique()) == {0, 1}
    assert leads[public_data.XEDUCATION_LABEL].mean() == pytest.approx(0.386, abs=0.005)
    assert leads[public_data.XEDUCATION_LEAD_NUMBER].is_unique
    text = leads.select_dtypes(exclude="number")
    assert not text.isin([public_data.XEDUCATION_NOT_ANSWERED]).any().any(), "'Select' means not answered"
    assert set(leads["Do Not Email"].dropna().unique()) <= {0.0, 1.0}
    assert pd.api.types.is_float_dtype(leads["TotalVisits"])
    for constant in ("Magazine", "Receive More Updates About Our Courses", "I agree to pay the amount through cheque"):
        assert constant not in leads.columns
    assert set(public_data.XEDUCATION_LEAKY_COLUMNS) <= set(leads.columns)
    kept = public_data.load_xeducation(XEDUCATION, drop_constant_columns=False)
    assert kept.shape == (7396, 37)


@needs_data
def test_xeducation_split_is_by_lead_number_in_raw_format(tmp_path: Path) -> None:
    train_csv, test_csv = public_data.split_xeducation(XEDUCATION, tmp_path)
    assert (train_csv, test_csv) == (tmp_path / "train.csv", tmp_path / "test.csv")
    train = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    test = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    original = pd.read_csv(XEDUCATION, dtype=str, keep_default_na=False)
    assert list(train.columns) == list(test.columns) == list(original.columns)
    assert len(train) + len(test) == len(original)
    assert len(test) == round(0.25 * len(original))
    assert train["Lead Number"].astype(int).max() < test["Lead Number"].astype(int).min()
    assert (train["Specialization"] == "Select").any(), "cells are written as they were read"
    merged = pd.concat([train, test]).sort_values("Prospect ID").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, original.sort_values("Prospect ID").reset_index(drop=True))


def test_xeducation_bad_label_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "Leads.csv"
    path.write_text("Prospect ID,Lead Number,Converted,TotalVisits\na,1,0,3\nb,2,maybe,4\n")
    with pytest.raises(io.DataError, match=r"Leads\.csv line 3, column Converted: 'maybe' is not a boolean"):
        public_data.load_xeducation(path)
    path.write_text("Prospect ID,Lead Number,TotalVisits\na,1,3\n")
    with pytest.raises(io.DataError, match="column Converted: missing column"):
        public_data.load_xeducation(path)


def test_xeducation_split_rejects_a_bad_fraction(tmp_path: Path) -> None:
    path = tmp_path / "Leads.csv"
    path.write_text("Prospect ID,Lead Number,Converted\na,2,0\nb,1,1\n")
    with pytest.raises(ValueError, match="test_fraction"):
        public_data.split_xeducation(path, tmp_path / "out", test_fraction=1.0)


# --- Olist ---------------------------------------------------------------------------------------


@needs_data
def test_olist_loads_mqls_with_label_and_no_leaks() -> None:
    mqls = public_data.load_olist(OLIST)
    assert len(mqls) == 4171
    assert int(mqls[public_data.OLIST_LABEL].sum()) == 362
    assert list(mqls.columns) == ["mql_id", "first_contact_date", "landing_page_id", "origin", "won"]
    assert mqls["first_contact_date"].min() == pd.Timestamp("2017-06-14")
    assert mqls["first_contact_date"].max() < pd.Timestamp("2018-03-01")
    assert not mqls["origin"].eq("").any()
    assert (mqls["origin"] == public_data.OLIST_UNKNOWN_ORIGIN).sum() == 593 + 24
    won_at = public_data.load_olist_won_dates(OLIST)
    assert len(won_at) == 362 and won_at.index.isin(mqls["mql_id"]).all()


@needs_data
def test_olist_split_is_time_ordered_and_closed_deals_follow(tmp_path: Path) -> None:
    train_dir, test_dir = public_data.split_olist(OLIST, tmp_path, cutoff="2018-02-01")
    train, test = public_data.load_olist(train_dir), public_data.load_olist(test_dir)
    assert len(train) + len(test) == 4171
    assert int(train["won"].sum() + test["won"].sum()) == 362
    assert train["first_contact_date"].max() < pd.Timestamp("2018-02-01") <= test["first_contact_date"].min()
    original = pd.read_csv(OLIST / public_data.OLIST_CLOSED_DEALS_FILE, dtype=str, keep_default_na=False)
    written = pd.read_csv(train_dir / public_data.OLIST_CLOSED_DEALS_FILE, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(original.columns)


@needs_data
def test_olist_cutoff_after_the_data_leaves_one_side_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leaves one side empty"):
        public_data.split_olist(OLIST, tmp_path, cutoff="2018-03-01")


def test_olist_bad_date_and_dangling_deal(tmp_path: Path) -> None:
    (tmp_path / public_data.OLIST_MQL_FILE).write_text(
        "mql_id,first_contact_date,landing_page_id,origin\nm1,01-02-2018,lp1,social\nm2,2018-02-03,lp1,\n"
    )
    (tmp_path / public_data.OLIST_CLOSED_DEALS_FILE).write_text("mql_id,won_date\nm1,05-02-2018 10:00\n")
    with pytest.raises(io.DataError, match=r"line 3, column first_contact_date: '2018-02-03' is not a date"):
        public_data.load_olist(tmp_path)
    (tmp_path / public_data.OLIST_MQL_FILE).write_text(
        "mql_id,first_contact_date,landing_page_id,origin\nm1,01-02-2018,lp1,social\n"
    )
    (tmp_path / public_data.OLIST_CLOSED_DEALS_FILE).write_text("mql_id,won_date\nm1,05-02-2018 10:00\nm9,x\n")
    with pytest.raises(io.DataError, match=r"olist_closed_deals_dataset\.csv line 3, column mql_id: 'm9' is not in"):
        public_data.load_olist(tmp_path)


# --- Maven ---------------------------------------------------------------------------------------


@needs_data
def test_maven_maps_to_the_ecosystem_schema(tmp_path: Path) -> None:
    ecosystem = public_data.load_maven(MAVEN)
    assert len(ecosystem.deals) == len(ecosystem.outcomes) == 6711
    assert len(ecosystem.partners) == 30
    assert ecosystem.outcomes["won"].mean() == pytest.approx(0.632, abs=0.001)
    assert ecosystem.engagement.empty and ecosystem.communications.empty
    for spec in ECOSYSTEM_TABLES:
        table = getattr(ecosystem, spec.name)
        assert list(table.columns) == spec.required_columns
        assert public_data.MAVEN_LEAK_COLUMN not in table.columns
    deals = ecosystem.deals
    assert "GTXPro" not in set(deals["products"]) and "GTX Pro" in set(deals["products"])
    assert "technolgy" not in set(deals["segment"]) and "technology" in set(deals["segment"])
    assert set(deals["region"]) == {"central", "east", "west"}
    gtx_pro = deals[deals["products"] == "GTX Pro"]
    assert (gtx_pro["amount"] == 4821.0).all(), "amount is the list price, not close_value"
    assert (ecosystem.partners["joined_at"] < deals["created_at"].min()).all()
    assert (
        ecosystem.partners["profile_text"].str.match(r"Sales agent at the (Central|East|West) office, team of ").all()
    )
    assert (ecosystem.outcomes["closed_at"] >= deals["created_at"]).all()

    io.write_ecosystem(ecosystem, tmp_path)
    read = io.read_ecosystem(tmp_path)
    pd.testing.assert_frame_equal(read.deals, ecosystem.deals)
    pd.testing.assert_frame_equal(read.outcomes, ecosystem.outcomes)


@needs_data
def test_maven_close_value_is_a_leak_and_amount_is_not() -> None:
    ecosystem = public_data.load_maven(MAVEN)
    close_values = public_data.load_maven_close_values(MAVEN)
    labels = ecosystem.outcomes.set_index(OUTCOMES.key[0])["won"].astype(int)
    leak_auc = roc_auc(labels, close_values.reindex(labels.index).to_numpy())
    assert leak_auc == pytest.approx(1.0, abs=1e-6), "close_value is 0 exactly when the deal is lost"
    amounts = ecosystem.deals.set_index(DEALS.key[0])["amount"].reindex(labels.index)
    assert abs(roc_auc(labels, amounts.to_numpy()) - 0.5) < 0.05, "the list price carries no real signal"
    assert np.all(close_values[~labels.astype(bool)] == 0.0)


def test_maven_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(io.DataError, match=r"sales_pipeline\.csv: file does not exist"):
        public_data.load_maven(tmp_path)
