"""CLI: train-ipp, ipp, evaluate lookalike and data yc-lookalike; user errors exit 2 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from partnermatch.cli import app

runner = CliRunner()
PROSPECT = {
    "prospect_id": "acme",
    "profile_text": "Acme Networks deploys next-generation firewall and SD-WAN across DACH.",
    "products": "firewall|sd-wan",
    "certifications": "firewall:2",
    "regions": "dach",
    "capacity": "6",
}


def write_prospects(path: Path, **changes: str) -> Path:
    pd.DataFrame([PROSPECT, PROSPECT | {"prospect_id": "beta"} | changes]).to_csv(path, index=False)
    return path


def test_train_ipp_then_score_prospects_to_json_and_csv(tmp_path: Path, isolated_paths: Path) -> None:
    generated = runner.invoke(app, ["generate", "--partners", "300", "--deals", "3000", "--out", str(tmp_path / "eco")])
    assert generated.exit_code == 0, generated.output
    trained = runner.invoke(
        app,
        ["train-ipp", "--data", str(tmp_path / "eco"), "--encoder", "hashing-64", "--json", str(tmp_path / "m.json")],
    )
    assert trained.exit_code == 0, trained.output
    assert "partnermatch-ipp v1 as champion" in trained.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"model", "centroid_similarity", "attribute_rubric"} <= set(metrics)

    prospects = write_prospects(tmp_path / "prospects.csv")
    scored = runner.invoke(app, ["ipp", "--prospects", str(prospects), "--out", str(tmp_path / "scores.json")])
    assert scored.exit_code == 0, scored.output
    payload = json.loads((tmp_path / "scores.json").read_text())
    assert (payload["model"], payload["model_version"], payload["encoder"]) == ("partnermatch-ipp", "1", "hashing-64")
    assert [item["prospect_id"] for item in payload["prospects"]] == ["acme", "beta"]
    assert 0 <= payload["prospects"][0]["fit_score"] <= 100 and payload["prospects"][0]["nearest_top_performers"]

    as_csv = runner.invoke(app, ["ipp", "--prospects", str(prospects), "--out", str(tmp_path / "scores.csv")])
    assert as_csv.exit_code == 0, as_csv.output
    table = pd.read_csv(tmp_path / "scores.csv")
    assert list(table["prospect_id"]) == ["acme", "beta"] and set(table["model_version"]) == {1}


def test_bad_prospects_exit_2_naming_the_field(tmp_path: Path, isolated_paths: Path) -> None:
    unknown = write_prospects(tmp_path / "unknown.csv", products="firewall|warp-drive")
    result = runner.invoke(app, ["ipp", "--prospects", str(unknown), "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 2 and "products" in result.output and "warp-drive" in result.output
    empty = write_prospects(tmp_path / "empty.csv", profile_text="")
    result = runner.invoke(app, ["ipp", "--prospects", str(empty), "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 2 and "profile_text" in result.output and "line 3" in result.output


def test_scoring_without_a_champion_exits_2(tmp_path: Path, isolated_paths: Path) -> None:
    prospects = write_prospects(tmp_path / "prospects.csv")
    result = runner.invoke(app, ["ipp", "--prospects", str(prospects), "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 2 and "train-ipp" in result.output


def test_evaluate_lookalike_and_the_yc_converter(tmp_path: Path) -> None:
    source = tmp_path / "Startups.csv"
    companies = [
        (f"C{i}", f"{['rocket', 'farm'][i % 2]} startup", 2008 + i % 4, ["Orbit", "Harvest"][i % 2]) for i in range(24)
    ]
    pd.DataFrame(
        {
            "Company": [name for name, *_ in companies],
            "Description": [text for _, text, *_ in companies],
            "Categories": ["Tech"] * len(companies),
            "Y Combinator Year": [year for *_, year, _ in companies],
            "Investors": [f"{investor}, Y Combinator" for *_, investor in companies],
        }
    ).to_csv(source, index=False)
    converted = runner.invoke(
        app,
        ["data", "yc-lookalike", "--source", str(source), "--out", str(tmp_path / "yc.csv"), "--cutoff", "2011-01-01"],
    )
    assert converted.exit_code == 0, converted.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            "lookalike",
            "--data",
            str(tmp_path / "yc.csv"),
            "--cutoff",
            "2011-01-01",
            "--encoder",
            "hashing-64",
            "--json",
            str(tmp_path / "out.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out.json").read_text())
    assert {"model", "model_without_popularity", "popularity", "tfidf_centroid"} <= set(results)
    assert results["tfidf_centroid"]["mrr"] == 1.0
    bad = runner.invoke(app, ["evaluate", "lookalike", "--data", str(source), "--cutoff", "2011-01-01"])
    assert bad.exit_code == 2 and "entity_id" in bad.output
