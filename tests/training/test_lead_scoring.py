"""training.lead_scoring on the real public files, split in time by the public_data helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features import io, public_data
from training.lead_scoring import evaluate_leads, evaluate_olist

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared/data is not beside the repository")
OLIST_TEST_CUTOFF = "2018-02-01"  # the copy here ends 2018-02-28: the last month is the test set


@pytest.fixture(scope="module")
def lead_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out_dir = tmp_path_factory.mktemp("xeducation")
    return public_data.split_xeducation(DATA / "xeducation-lead-scoring" / "Leads.csv", out_dir)


@pytest.fixture(scope="module")
def leak_free(lead_files: tuple[Path, Path]) -> dict[str, Any]:
    return evaluate_leads(*lead_files)


@pytest.fixture(scope="module")
def leaky(lead_files: tuple[Path, Path]) -> dict[str, Any]:
    return evaluate_leads(*lead_files, include_leaky=True)


def test_leak_free_model_beats_logistic_regression(leak_free: dict[str, Any]) -> None:
    model, baseline = leak_free["model"], leak_free["logistic_regression"]
    assert model["roc_auc"] > baseline["roc_auc"] > 0.6
    assert 0.0 <= model["ece"] <= 0.1 and model["log_loss"] < 0.6
    assert leak_free["rows"] == {"train": 5547, "test": 1849}
    assert model["rows"] == baseline["rows"] == 1849
    assert leak_free["include_leaky"] is False
    assert leak_free["calibration"]["method"] in ("platt", "isotonic", "none")
    assert set(leak_free["calibration"]["cv_log_loss"]) == {"platt", "isotonic", "none"}
    assert not set(leak_free["features"]) & set(public_data.XEDUCATION_LEAKY_COLUMNS)
    assert not set(leak_free["features"]) & {*public_data.XEDUCATION_ID_COLUMNS, public_data.XEDUCATION_LABEL}
    json.dumps(leak_free)


@pytest.mark.parametrize("evaluation", ["leak_free", "leaky"])
def test_calibrated_model_is_no_worse_than_logistic_regression_on_log_loss(
    evaluation: str, request: pytest.FixtureRequest
) -> None:
    result = request.getfixturevalue(evaluation)
    model, baseline = result["model"], result["logistic_regression"]
    assert model["log_loss"] < baseline["log_loss"]
    gain = result["log_loss_gain_over_logistic_regression"]
    assert gain["value"] == pytest.approx(baseline["log_loss"] - model["log_loss"])
    assert gain["ci_low"] < gain["value"] < gain["ci_high"]
    for metrics in (model, baseline):
        for name in ("roc_auc", "log_loss", "ece"):
            assert metrics[f"{name}_ci_low"] < metrics[f"{name}_ci_high"]
        assert metrics["log_loss_ci_low"] < metrics["log_loss"] < metrics["log_loss_ci_high"]


def test_leaky_columns_inflate_roc_auc(leak_free: dict[str, Any], leaky: dict[str, Any]) -> None:
    assert set(public_data.XEDUCATION_LEAKY_COLUMNS) <= set(leaky["features"])
    assert leaky["include_leaky"] is True
    assert leaky["model"]["roc_auc"] > leak_free["model"]["roc_auc"] + 0.05
    assert leaky["logistic_regression"]["roc_auc"] > leak_free["logistic_regression"]["roc_auc"] + 0.05


def test_missing_label_column_is_a_data_error(lead_files: tuple[Path, Path], tmp_path: Path) -> None:
    train_csv, test_csv = lead_files
    unlabelled = tmp_path / "test.csv"
    pd.read_csv(test_csv, dtype=str, keep_default_na=False).drop(columns="Converted").to_csv(unlabelled, index=False)
    with pytest.raises(io.DataError) as caught:
        evaluate_leads(train_csv, unlabelled)
    assert (caught.value.path, caught.value.column) == (unlabelled, "Converted")


def test_missing_feature_and_bad_number_in_test_file(lead_files: tuple[Path, Path], tmp_path: Path) -> None:
    train_csv, test_csv = lead_files
    raw = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    raw.drop(columns="Lead Source").to_csv(tmp_path / "no_source.csv", index=False)
    with pytest.raises(io.DataError, match="column Lead Source: missing column"):
        evaluate_leads(train_csv, tmp_path / "no_source.csv")
    raw.loc[3, "TotalVisits"] = "many"
    raw.to_csv(tmp_path / "bad_number.csv", index=False)
    with pytest.raises(io.DataError, match=r"line 5, column TotalVisits: 'many' is not a number"):
        evaluate_leads(train_csv, tmp_path / "bad_number.csv")


def test_olist_returns_sane_metrics_and_states_censoring(tmp_path: Path) -> None:
    train_dir, test_dir = public_data.split_olist(DATA / "olist-marketing-funnel", tmp_path, OLIST_TEST_CUTOFF)
    result = evaluate_olist(train_dir, test_dir)
    json.dumps(result)
    assert result["model"]["roc_auc"] > 0.5
    assert result["logistic_regression"]["roc_auc"] > 0.5
    assert 0.0 <= result["model"]["ece"] <= 0.2
    assert result["model"]["log_loss"] < result["logistic_regression"]["log_loss"]
    assert result["features"] == ["origin", "landing_page_id", "contact_weekday"]
    assert result["rows"]["test"] == 1028
    assert result["rows"]["train"] + result["rows"]["train_before_label_window"] == 4171 - 1028
    assert result["censoring"]["test_follow_up_days_min"] > 0
    assert any("Right-censoring" in note for note in result["notes"])


def test_olist_missing_closed_deals_file_is_a_data_error(tmp_path: Path) -> None:
    train_dir, test_dir = public_data.split_olist(DATA / "olist-marketing-funnel", tmp_path, OLIST_TEST_CUTOFF)
    (test_dir / public_data.OLIST_CLOSED_DEALS_FILE).unlink()
    with pytest.raises(io.DataError, match="file does not exist"):
        evaluate_olist(train_dir, test_dir)
