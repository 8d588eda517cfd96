"""Prospect files: valid rows become typed records; every bad field exits with its row and name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features import schema
from features.io import DataError
from features.prospects import partners_as_prospects, prospects_frame, read_prospects

GOOD = {
    "prospect_id": "acme",
    "profile_text": "Acme Networks deploys next-generation firewall and SD-WAN across DACH.",
    "products": "firewall|sd-wan",
    "certifications": "firewall:2",
    "regions": "dach",
    "capacity": "6",
}


def write_csv(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    path = tmp_path / "prospects.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_and_json_read_the_same_prospect(tmp_path: Path) -> None:
    from_csv = read_prospects(write_csv(tmp_path, [GOOD]))
    json_path = tmp_path / "prospects.json"
    json_path.write_text(json.dumps([GOOD | {"products": ["firewall", "sd-wan"], "certifications": {"firewall": 2}}]))
    from_json = read_prospects(json_path)
    assert from_csv == from_json
    prospect = from_csv[0]
    assert prospect.products == ("firewall", "sd-wan") and prospect.regions == ("dach",)
    assert dict(prospect.certifications) == {"firewall": 2} and prospect.capacity == 6


def test_missing_prospect_id_defaults_to_the_line_number(tmp_path: Path) -> None:
    rows = [GOOD | {"prospect_id": ""}, GOOD | {"prospect_id": ""}]
    assert [prospect.prospect_id for prospect in read_prospects(write_csv(tmp_path, rows))] == ["2", "3"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("profile_text", "", "missing or empty"),
        ("profile_text", "ok ?? 1", "unusable"),
        ("products", "firewall|quantum-toaster", "unknown product 'quantum-toaster'"),
        ("regions", "mars", "unknown region 'mars'"),
        ("certifications", "firewall:9", "level 0..3"),
        ("certifications", "teleport:1", "unknown product 'teleport'"),
        ("capacity", "0", "must be >= 1"),
        ("capacity", "lots", "not a number"),
    ],
)
def test_a_bad_field_is_named_with_its_line(tmp_path: Path, field: str, value: str, reason: str) -> None:
    path = write_csv(tmp_path, [GOOD, GOOD | {field: value}])
    with pytest.raises(DataError) as caught:
        read_prospects(path)
    assert caught.value.column == field and caught.value.row == 3
    assert reason in str(caught.value) and "prospects.csv line 3" in str(caught.value)


@pytest.mark.parametrize(
    ("certifications", "reason"),
    [
        ({"firewall:3|sd-wan": 1}, "unknown product 'firewall:3|sd-wan'"),
        ({"firewall": 4}, "level 4 is not a whole number 0..3"),
        ({"firewall": 1.5}, "level 1.5 is not a whole number 0..3"),
    ],
)
def test_certifications_given_as_a_mapping_are_checked_as_given(
    tmp_path: Path, certifications: dict[str, object], reason: str
) -> None:
    path = tmp_path / "prospects.json"
    path.write_text(json.dumps([GOOD | {"certifications": certifications}]))
    with pytest.raises(DataError, match="certifications") as caught:
        read_prospects(path)
    assert reason in str(caught.value)


def test_unsupported_or_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unsupported file type"):
        read_prospects(tmp_path / "prospects.xlsx")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="no prospects"):
        read_prospects(empty)


def test_partners_become_prospects_with_mentioned_and_certified_products(world: schema.Ecosystem) -> None:
    prospects = partners_as_prospects(world.partners)
    assert len(prospects) == len(world.partners)
    first = prospects[0]
    assert first.prospect_id == "P000" and first.products == ("firewall",)
    assert first.regions == ("na-east", "na-west") and dict(first.certifications) == {"firewall": 1}
    round_trip = prospects_frame(prospects)
    assert round_trip["products"].iloc[0] == "firewall" and round_trip["capacity"].iloc[0] == 3
