"""features.io: round trips, one test per error kind (file, row and column named), speed at 100k rows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import io
from features.schema import (
    COMMUNICATIONS,
    DEALS,
    ECOSYSTEM_TABLES,
    ENGAGEMENT,
    OUTCOMES,
    PARTNERS,
    Ecosystem,
)


def _dates(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"))


def _partners() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "partner_id": ["P1", "P2"],
            "name": ["Alpha", "Beta"],
            "profile_text": ["firewall reseller", "cloud integrator"],
            "home_region": ["dach", "nordics"],
            "regions": ["dach|nordics", "nordics"],
            "certifications": ["firewall:2", ""],
            "tier": ["gold", "silver"],
            "capacity": [5, 3],
            "joined_at": _dates("2020-01-01", "2021-06-15"),
        }
    )


def _deals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3"],
            "created_at": _dates("2024-01-01", "2024-01-02 10:30:00", "2024-02-01"),
            "segment": ["smb", "enterprise", "smb"],
            "region": ["dach", "nordics", "dach"],
            "products": ["firewall|sd-wan", "storage", "firewall"],
            "requirement_text": ["needs a firewall", "storage refresh", "branch firewalls"],
            "amount": [1000.0, 25000.5, 300.0],
            "registered_partner_id": ["", "P2", ""],
        }
    )


def _ecosystem() -> Ecosystem:
    return Ecosystem(
        partners=_partners(),
        deals=_deals(),
        outcomes=pd.DataFrame(
            {
                "deal_id": ["D1", "D2", "D2"],
                "partner_id": ["P1", "P1", "P2"],
                "won": [True, False, True],
                "closed_at": _dates("2024-02-01", "2024-03-01", "2024-03-01"),
                "team_id": ["", "T1", "T1"],
            }
        ),
        engagement=pd.DataFrame(
            {
                "partner_id": ["P1", "P2"],
                "occurred_at": _dates("2024-01-05", "2024-01-06"),
                "kind": ["portal_login", "training_completed"],
            }
        ),
        communications=pd.DataFrame(
            {
                "message_id": ["M1"],
                "partner_id": ["P2"],
                "sent_at": _dates("2024-01-07"),
                "channel": ["email"],
                "text": ["Thanks, the demo went well."],
            }
        ),
    )


def _deals_csv(tmp_path: Path, rows: list[str]) -> Path:
    """A deals.csv with the given data lines (line 1 is the header, rows start at line 2)."""
    path = tmp_path / "deals.csv"
    header = "deal_id,created_at,segment,region,products,requirement_text,amount,registered_partner_id"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _good_row(index: int) -> str:
    return f"D{index},2024-01-{index % 28 + 1:02d},smb,dach,firewall|sd-wan,needs a firewall,{100 + index},"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip_keeps_values_and_dtypes(tmp_path: Path, suffix: str) -> None:
    for spec, frame in ((DEALS, _deals()), (PARTNERS, _partners())):
        path = io.write_table(frame, tmp_path / f"{spec.name}{suffix}")
        read = io.read_table(path, spec)
        expected = io.validate_table(frame, spec, path)
        pd.testing.assert_frame_equal(read, expected)
        assert read["created_at" if spec is DEALS else "joined_at"].dtype == np.dtype("datetime64[ns]")
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files are left behind"


def test_read_table_parses_kinds_and_keeps_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(
        "deal_id,partner_id,won,closed_at,team_id,note\n"
        "D1,P1,Won,2024-02-01,,first\n"
        "D2,P1,no,2024-03-01T12:00:00+02:00,T1,second\n"
        "D3,P2,1,2024-03-02,T1,\n"
    )
    outcomes = io.read_table(path, OUTCOMES)
    assert outcomes["won"].tolist() == [True, False, True]
    assert outcomes["won"].dtype == np.dtype(bool)
    assert outcomes["closed_at"].tolist()[1] == pd.Timestamp("2024-03-01 10:00:00"), "offsets become naive UTC"
    assert outcomes["team_id"].tolist() == ["", "T1", "T1"], "empty optional str cells are ''"
    assert outcomes["note"].tolist() == ["first", "second", ""], "extra columns are kept"


def test_ecosystem_round_trip(tmp_path: Path) -> None:
    ecosystem = _ecosystem()
    paths = io.write_ecosystem(ecosystem, tmp_path)
    assert sorted(paths) == sorted(spec.name for spec in ECOSYSTEM_TABLES)
    assert all(path.suffix == ".parquet" and path.exists() for path in paths.values())
    read = io.read_ecosystem(tmp_path)
    for spec in ECOSYSTEM_TABLES:
        expected = io.validate_table(getattr(ecosystem, spec.name), spec, paths[spec.name])
        pd.testing.assert_frame_equal(getattr(read, spec.name), expected)


def test_a_directory_of_csv_exports_reads_like_parquet(tmp_path: Path) -> None:
    ecosystem = _ecosystem()
    parquet_paths = io.write_ecosystem(ecosystem, tmp_path / "parquet")
    (tmp_path / "csv").mkdir()
    for spec in ECOSYSTEM_TABLES:
        getattr(ecosystem, spec.name).to_csv(tmp_path / "csv" / f"{spec.name}.csv", index=False)
    from_csv, from_parquet = io.read_ecosystem(tmp_path / "csv"), io.read_ecosystem(tmp_path / "parquet")
    for spec in ECOSYSTEM_TABLES:
        pd.testing.assert_frame_equal(getattr(from_csv, spec.name), getattr(from_parquet, spec.name))
    outcomes = ecosystem.outcomes.assign(partner_id=["P1", "P9", "P2"])
    outcomes.to_csv(tmp_path / "csv" / "outcomes.csv", index=False)
    with pytest.raises(io.DataError, match=r"^outcomes\.csv line 3, column partner_id: 'P9' is not in partners\.csv$"):
        io.read_ecosystem(tmp_path / "csv")
    parquet_paths["deals"].rename(tmp_path / "csv" / "deals.parquet")
    with pytest.raises(io.DataError, match=r"both deals\.parquet and deals\.csv exist"):
        io.read_ecosystem(tmp_path / "csv")
    (tmp_path / "csv" / "deals.parquet").unlink()
    (tmp_path / "csv" / "deals.csv").unlink()
    with pytest.raises(io.DataError, match=r"deals\.parquet: file does not exist \(nor does deals\.csv\)"):
        io.read_ecosystem(tmp_path / "csv")


def test_empty_tables_round_trip(tmp_path: Path) -> None:
    for spec in (ENGAGEMENT, COMMUNICATIONS):
        path = io.write_table(io.empty_table(spec), tmp_path / f"{spec.name}.parquet")
        pd.testing.assert_frame_equal(io.read_table(path, spec), io.empty_table(spec))


def test_bad_date_message_names_file_line_and_column(tmp_path: Path) -> None:
    rows = [_good_row(index) for index in range(1, 9)]
    rows[5] = rows[5].replace("2024-01-07", "yesterday")  # data row 5 sits on line 7
    path = _deals_csv(tmp_path, rows)
    with pytest.raises(io.DataError) as caught:
        io.read_table(path, DEALS)
    error = caught.value
    assert (error.path, error.row, error.column, error.reason) == (path, 7, "created_at", "'yesterday' is not a date")
    assert str(error) == "deals.csv line 7, column created_at: 'yesterday' is not a date"
    assert isinstance(error, ValueError)


def test_bad_date_in_parquet_is_reported_by_row_index(tmp_path: Path) -> None:
    frame = _deals().assign(created_at=["2024-01-01", "2024-01-02", "2024-13-45"])
    path = io.write_table(frame, tmp_path / "deals.parquet")
    with pytest.raises(io.DataError, match=r"^deals\.parquet row 2 \(0-based\), column created_at: '2024-13-45'"):
        io.read_table(path, DEALS)


def test_bad_number_is_reported(tmp_path: Path) -> None:
    rows = [_good_row(1), _good_row(2).replace(",102,", ",12k,")]
    with pytest.raises(io.DataError) as caught:
        io.read_table(_deals_csv(tmp_path, rows), DEALS)
    assert (caught.value.row, caught.value.column) == (3, "amount")
    assert "'12k' is not a number" in str(caught.value)


def test_non_integer_int_is_reported(tmp_path: Path) -> None:
    frame = _partners().assign(capacity=[5.0, 2.5])
    path = io.write_table(frame, tmp_path / "partners.parquet")
    with pytest.raises(io.DataError) as caught:
        io.read_table(path, PARTNERS)
    assert (caught.value.row, caught.value.column) == (1, "capacity")
    assert str(caught.value).startswith("partners.parquet row 1 (0-based), column capacity:")


def test_bad_boolean_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text("deal_id,partner_id,won,closed_at,team_id\nD1,P1,true,2024-02-01,\nD2,P1,maybe,2024-02-01,\n")
    with pytest.raises(io.DataError, match=r"line 3, column won: 'maybe' is not a boolean"):
        io.read_table(path, OUTCOMES)


def test_empty_required_cell_is_reported(tmp_path: Path) -> None:
    rows = [_good_row(1), _good_row(2), _good_row(3).replace(",smb,", ",  ,")]
    with pytest.raises(io.DataError) as caught:
        io.read_table(_deals_csv(tmp_path, rows), DEALS)
    assert (caught.value.row, caught.value.column) == (4, "segment")
    assert "required value is empty" in str(caught.value)


def test_blank_line_is_a_row_not_dropped(tmp_path: Path) -> None:
    with pytest.raises(io.DataError) as caught:
        io.read_table(_deals_csv(tmp_path, [_good_row(1), "", _good_row(2)]), DEALS)
    assert (caught.value.row, caught.value.column) == (3, "deal_id")


def test_duplicate_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    rows = [_good_row(1), _good_row(2), _good_row(3), _good_row(2)]
    with pytest.raises(io.DataError) as caught:
        io.read_table(_deals_csv(tmp_path, rows), DEALS)
    assert (caught.value.row, caught.value.column) == (5, "deal_id")
    assert "duplicate key deal_id='D2' (first on line 3)" in str(caught.value)


def test_missing_column_is_named_with_the_columns_present(tmp_path: Path) -> None:
    path = io.write_table(_deals().drop(columns=["amount"]), tmp_path / "deals.csv")
    with pytest.raises(io.DataError) as caught:
        io.read_table(path, DEALS)
    assert caught.value.column == "amount" and caught.value.row is None
    assert "missing column; the file has: deal_id, created_at" in str(caught.value)


def test_unknown_suffix_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(io.DataError, match=r"deals\.json: unsupported file type '\.json'"):
        io.read_table(tmp_path / "deals.json", DEALS)
    with pytest.raises(io.DataError, match="unsupported file type"):
        io.write_table(_deals(), tmp_path / "deals.xlsx")
    with pytest.raises(io.DataError, match=r"deals\.csv: file does not exist"):
        io.read_table(tmp_path / "deals.csv", DEALS)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(io.DataError, match="file is empty"):
        io.read_table(tmp_path / "empty.csv", DEALS)


def test_dangling_outcome_partner_names_table_row_and_column(tmp_path: Path) -> None:
    ecosystem = _ecosystem()
    outcomes = ecosystem.outcomes.copy()
    outcomes.loc[2, "partner_id"] = "P9"
    io.write_ecosystem(Ecosystem(**{**ecosystem.__dict__, "outcomes": outcomes}), tmp_path)
    with pytest.raises(io.DataError) as caught:
        io.read_ecosystem(tmp_path)
    assert (caught.value.path.name, caught.value.row, caught.value.column) == ("outcomes.parquet", 2, "partner_id")
    assert str(caught.value) == "outcomes.parquet row 2 (0-based), column partner_id: 'P9' is not in partners.parquet"


def test_dangling_outcome_deal_and_engagement_partner(tmp_path: Path) -> None:
    ecosystem = _ecosystem()
    outcomes = ecosystem.outcomes.assign(deal_id=["D1", "D2", "D7"])
    io.write_ecosystem(Ecosystem(**{**ecosystem.__dict__, "outcomes": outcomes}), tmp_path / "a")
    with pytest.raises(io.DataError, match=r"outcomes\.parquet row 2 \(0-based\), column deal_id: 'D7'"):
        io.read_ecosystem(tmp_path / "a")
    engagement = ecosystem.engagement.assign(partner_id=["P1", "P3"])
    io.write_ecosystem(Ecosystem(**{**ecosystem.__dict__, "engagement": engagement}), tmp_path / "b")
    with pytest.raises(io.DataError, match=r"engagement\.parquet row 1 \(0-based\), column partner_id: 'P3'"):
        io.read_ecosystem(tmp_path / "b")


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = io.write_table(_deals(), tmp_path / "deals.parquet")
    before = path.read_bytes()
    unwritable = pd.DataFrame({"cell": [{1, 2}, "text"]})
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises, the old file must survive
        io.write_table(unwritable, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deals.parquet"]


def test_read_csv_checked(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("id,label\n1,0\n2,1\n")
    assert io.read_csv_checked(path, ["id", "label"]).shape == (2, 2)
    with pytest.raises(io.DataError) as caught:
        io.read_csv_checked(path, ["id", "Converted"])
    assert caught.value.column == "Converted" and "the file has: id, label" in str(caught.value)
    with pytest.raises(io.DataError, match="file does not exist"):
        io.read_csv_checked(tmp_path / "other.csv", ["id"])


def test_100k_rows_validate_quickly_and_find_the_last_bad_row(tmp_path: Path) -> None:
    rows = 100_000
    index = np.arange(rows)
    frame = pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in index],
            "created_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(index % 365, unit="D"),
            "segment": np.where(index % 2 == 0, "smb", "enterprise"),
            "region": "dach",
            "products": "firewall|sd-wan",
            "requirement_text": "needs a firewall",
            "amount": index * 1.5,
            "registered_partner_id": "",
        }
    )
    path = io.write_table(frame, tmp_path / "deals.csv")
    start = time.perf_counter()
    read = io.read_table(path, DEALS)
    elapsed = time.perf_counter() - start
    assert len(read) == rows
    assert elapsed < 5.0, f"validating {rows} rows took {elapsed:.1f}s"

    frame["amount"] = frame["amount"].astype(object)
    frame.loc[rows - 1, "amount"] = "n/a"
    bad_path = io.write_table(frame, tmp_path / "bad.csv")
    with pytest.raises(io.DataError) as caught:
        io.read_table(bad_path, DEALS)
    assert (caught.value.row, caught.value.column) == (rows + 1, "amount")


def test_write_atomically_keeps_the_suffix_and_leaves_nothing_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "vectors.npy"
    io.write_atomically(target, lambda path: np.save(path, np.arange(3)))  # np.save adds .npy unless present
    assert np.load(target).tolist() == [0, 1, 2]

    def half_written(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.write_atomically(target, half_written)
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(item.name for item in target.parent.iterdir()) == ["vectors.npy"]


def test_write_atomically_publishes_a_directory_once(tmp_path: Path) -> None:
    def fill(directory: Path, text: str) -> None:
        directory.mkdir()
        (directory / "file.txt").write_text(text)

    final = tmp_path / "bundle-v1"
    io.write_atomically(final, lambda path: fill(path, "first"))
    with pytest.raises(OSError):  # a second publisher finds the first one's copy in place
        io.write_atomically(final, lambda path: fill(path, "second"))
    assert (final / "file.txt").read_text() == "first"
    assert [item.name for item in tmp_path.iterdir()] == ["bundle-v1"]
