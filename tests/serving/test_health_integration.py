"""Real HTTP (`bentoml serve`) with the smoke sentiment and health champions: /sentiment answers through
adaptive batching (concurrent requests agree with one request), /partner_health and the KPIs answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from models.registry import Paths
from partnermatch.bench.route import running_service
from serving.stores import sqlite_url
from tests.serving.test_health_endpoints import TEXTS

STARTUP_LIMIT_SECONDS = 120.0


@pytest.mark.integration
def test_bentoml_serve_answers_sentiment_health_and_kpis(smoke_health_store: Path, tmp_path: Path) -> None:
    with running_service(
        Paths.from_environment(),
        sqlite_url(tmp_path / "decisions.sqlite"),
        tmp_path / "server.log",
        STARTUP_LIMIT_SECONDS,
    ) as server:

        def score(texts: list[str]) -> list[dict[str, object]]:
            with httpx.Client(base_url=server.url, timeout=30.0, headers=server.headers) as client:
                response = client.post("/sentiment", json={"texts": texts})
                assert response.status_code == 200, response.text
                results: list[dict[str, object]] = response.json()["results"]
                return results

        together = score(TEXTS)
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            apart = [results[0] for results in pool.map(score, [[text] for text in TEXTS])]
        assert [result["label"] for result in apart] == [result["label"] for result in together]
        assert [result["frustration"] for result in apart] == pytest.approx([r["frustration"] for r in together])
        with httpx.Client(base_url=server.url, timeout=30.0, headers=server.headers) as client:
            assert client.post("/sentiment", json={"texts": [""]}).status_code == 422
            health = client.post("/partner_health", json={"partner_ids": ["P000001"]})
            assert health.status_code == 200, health.text
            assert health.json()["partners"][0]["band"] in ("healthy", "watch", "at_risk")
            assert client.post("/partner_health", json={"partner_ids": ["ghost"]}).status_code == 404
            assert client.get("/partners/P000001/kpis").status_code == 200
