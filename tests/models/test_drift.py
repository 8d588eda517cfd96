"""PSI, reference profiles and drift reports (pure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.drift import (
    ALERT_PSI,
    WARN_PSI,
    bin_shares,
    column_profile,
    drift_report,
    html_report,
    psi,
    read_reference,
    reference_of,
    status_of,
)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    even = np.full(4, 0.25)
    assert psi(even, even) == 0.0
    small, large = psi(even, [0.3, 0.25, 0.25, 0.2]), psi(even, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < large
    # (a - e) ln(a / e) summed by hand
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(-0.25 * np.log(0.5) + 0.25 * np.log(1.5))
    assert np.isfinite(psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin costs a finite amount


def test_status_thresholds() -> None:
    assert [status_of(value) for value in (0.0, WARN_PSI - 1e-9, WARN_PSI, ALERT_PSI - 1e-9, ALERT_PSI)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "alert",
    ]
    assert status_of(None) == "unknown"


def test_profile_bins_hold_deciles_and_merge_repeated_edges() -> None:
    values = np.arange(1000, dtype=float)
    profile = column_profile(values)
    assert len(profile.edges) == 9
    np.testing.assert_allclose(profile.shares, 0.1, atol=0.002)
    constant = column_profile(np.ones(50))
    assert constant.shares == (1.0,) or sum(constant.shares) == pytest.approx(1.0)
    assert len(constant.edges) <= 1
    np.testing.assert_allclose(bin_shares(np.array([-1.0, 0.5, 2.0]), (0.0, 1.0)), [1 / 3, 1 / 3, 1 / 3])


def test_report_is_ok_for_the_same_population_and_alerts_on_a_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = reference_of(
        {"amount": rng.lognormal(10, 1, 5000), "score": rng.uniform(size=5000)}, "2024-01-01", "2024-06-30"
    )
    same = drift_report(reference, {"amount": rng.lognormal(10, 1, 2000), "score": rng.uniform(size=2000)})
    shifted = drift_report(reference, {"amount": rng.lognormal(11, 1, 2000), "score": rng.uniform(size=2000)})
    assert same.status == "ok" and same.psi_max < WARN_PSI
    assert shifted.status == "alert" and shifted.worst_column == "amount"
    assert shifted.columns["score"].status == "ok"
    assert shifted.as_json()["psi"]["amount"] == pytest.approx(shifted.psi_max)

    reference.save(tmp_path)
    assert read_reference(tmp_path) == reference
    assert read_reference(tmp_path / "elsewhere") is None

    page = html_report(shifted, "Drift <test>")
    assert page.startswith("<!doctype html>") and "Drift &lt;test&gt;" in page
    assert page.index("amount") < page.index("score")  # worst first
    assert page.count("<svg") == 2


def test_report_refuses_traffic_without_profiled_columns() -> None:
    reference = reference_of({"amount": np.arange(10.0)}, "a", "b")
    with pytest.raises(ValueError, match="nothing to compare"):
        drift_report(reference, {"other": np.arange(3.0)})
    with pytest.raises(ValueError, match="nothing to compare"):
        drift_report(reference, {"amount": np.zeros(0)})
    with pytest.raises(ValueError, match="same"):
        reference_of({"a": np.arange(3.0), "b": np.arange(4.0)}, "a", "b")
