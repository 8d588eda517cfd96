"""CLI: commands over plain functions; user errors exit 2 with a message naming the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from features import io
from partnermatch.cli import app
from training.workflows import load_ecosystem_directory

runner = CliRunner()


def test_generate_then_read_back(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--partners", "50", "--deals", "300", "--out", str(tmp_path / "eco")])
    assert result.exit_code == 0, result.output
    ecosystem, truth = load_ecosystem_directory(tmp_path / "eco")
    assert len(ecosystem.partners) == 50 and len(ecosystem.deals) == 300
    assert truth is not None and len(truth.outcome_probability) == len(ecosystem.outcomes)


def test_train_on_a_broken_directory_exits_2_naming_the_column(tmp_path: Path) -> None:
    runner.invoke(app, ["generate", "--partners", "40", "--deals", "200", "--out", str(tmp_path / "eco")])
    deals = pd.read_parquet(tmp_path / "eco" / "deals.parquet").drop(columns=["amount"])
    io.write_table(deals, tmp_path / "eco" / "deals.parquet")
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "eco"), "--encoder", "hashing-16"])
    assert result.exit_code == 2
    assert "amount" in result.output and "deals.parquet" in result.output


def test_bad_config_key_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nnum_trees = 3\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "num_trees" in result.output


def test_missing_leads_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "leads", "--train", str(tmp_path / "no.csv"), "--test", "x.csv"])
    assert result.exit_code == 2
    assert "no.csv" in result.output


def test_bench_train_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "train", "--partners", "60", "--deals", "600", "--json", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert results["model"]["fit_seconds"] > 0
    assert results["logistic_regression"]["fit_seconds"] > 0
    assert results["rows"]["total"] == results["rows"]["train"] + results["rows"]["calibration"]


def test_train_off_a_terminal_prints_a_line_per_stage_and_the_counts(tmp_path: Path, isolated_paths: Path) -> None:
    runner.invoke(app, ["generate", "--partners", "40", "--deals", "200", "--out", str(tmp_path / "eco")])
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "eco"), "--encoder", "hashing-16"])
    assert result.exit_code == 0, result.output
    # "[   3s] stage" starts a stage; "[   3s]   done/total ..." is a count within it.
    progress = [re.match(r"\[ *\w+\] (  )?(.*)", line) for line in result.output.splitlines()]
    stages = [match[2] for match in progress if match and not match[1]]
    counts = [match[2].split(" in ")[0] for match in progress if match and match[1]]
    assert stages[:2] == ["registry readable; champion: none yet", "embedding 40 profiles and 200 deals (hashing-16)"]
    assert {"indexing history", "logging to MLflow and registering the model"} <= set(stages)
    rows = len(pd.read_parquet(tmp_path / "eco" / "outcomes.parquet"))
    assert counts == ["40/40", "200/200", f"{rows:,}/{rows:,}"]


def test_bench_load_rejects_bad_worker_counts() -> None:
    for workers in ("0", "1,x", ""):
        result = runner.invoke(app, ["bench", "load", "--workers", workers])
        assert result.exit_code == 2, result.output
        assert "--workers" in result.output


def test_evaluate_sentiment_writes_json_for_both_systems(tmp_path: Path, isolated_paths: Path) -> None:
    lines = [
        f"{word} news {i} .@{label}"
        for i in range(20)
        for word, label in (("Profit rose", "positive"), ("Loss widened", "negative"), ("Meeting held", "neutral"))
    ]
    (tmp_path / "train.txt").write_text("\n".join(lines[:45]) + "\n", encoding="latin-1")
    (tmp_path / "test.txt").write_text("\n".join(lines[45:]) + "\n", encoding="latin-1")
    out = tmp_path / "sentiment.json"
    arguments = ["--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt"), "--format", "phrasebank"]
    result = runner.invoke(app, ["evaluate", "sentiment", *arguments, "--encoder", "hashing-32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert set(results["model"]) >= {"accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive"}
    assert results["vader"]["rows"] == results["model"]["rows"] == 15


def test_evaluate_sentiment_bad_input_exits_2(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("Profit rose .@positive\n", encoding="latin-1")
    bad.write_text("Profit rose .@positive\nSales fell .@down\n", encoding="latin-1")
    for arguments, expected in (
        (["--train", str(good), "--test", str(bad), "--format", "phrasebank"], "bad.txt line 2: label 'down'"),
        (["--train", str(good), "--test", str(good), "--format", "tweets"], "unknown format 'tweets'"),
        (["--train", str(tmp_path / "none.tsv"), "--test", str(good), "--format", "goemotions"], "labels.txt"),
    ):
        result = runner.invoke(app, ["evaluate", "sentiment", *arguments, "--encoder", "hashing-32"])
        assert result.exit_code == 2, result.output
        assert expected in result.output


def test_bench_sentiment_without_a_champion_exits_2(tmp_path: Path, isolated_paths: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("Profit rose .@positive\n", encoding="latin-1")
    result = runner.invoke(app, ["bench", "sentiment", "--texts", str(texts), "--format", "phrasebank"])
    assert result.exit_code == 2
    assert "train-sentiment" in result.output
