"""bench embed: a smoke run through the CLI on the session's ONNX exports (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from partnermatch.cli import app
from tests.features.test_embed import VARIED_TEXTS

runner = CliRunner()


@pytest.mark.integration
def test_bench_embed_reports_the_ratio_latencies_and_an_equal_bulk_path(
    tmp_path: Path, onnx_static_export: list[str], onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNERMATCH_CACHE", str(onnx_cache_dir))  # both exports are built there already
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": VARIED_TEXTS, "label": "neutral"}).to_csv(texts, index=False)
    out = tmp_path / "embed.json"
    arguments = ["bench", "embed", "--texts", str(texts), "--format", "csv", "--one-at-a-time", "5"]
    result = runner.invoke(app, [*arguments, "--no-torch-reference", "--json", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert results["texts"] == len(VARIED_TEXTS)
    assert results["one_at_a_time"]["texts"] == 5
    assert results["bulk"]["encoder"] == "all-MiniLM-L6-v2-onnx-int8-static"
    assert results["speedup"] == pytest.approx(
        results["bulk"]["texts_per_second"] / results["one_at_a_time"]["texts_per_second"]
    )
    for latency in results["serving_latency"].values():
        assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert 0.0 <= results["max_cosine_deviation_bulk_vs_serving"] <= 1e-6
    assert "cosine_to_torch_fp32" not in results
