"""The real thing: `bentoml serve` in a subprocess on a free loopback port with the smoke champion.
Also the benchmark end to end at a tiny size (slow)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from models.registry import Paths
from partnermatch.bench.route import running_service
from serving.keys import KeyStore, Scope
from serving.ratelimit import RateLimit
from serving.service import MAX_BODY_BYTES
from serving.stores import sqlite_url
from tests.serving.test_ipp import PROSPECT
from tests.serving.test_service import DEAL

STARTUP_LIMIT_SECONDS = 60.0


@pytest.mark.integration
def test_bentoml_serve_answers_route_health_and_metrics(smoke_store: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with running_service(
        Paths.from_environment(),
        sqlite_url(tmp_path / "decisions.sqlite"),
        tmp_path / "server.log",
        STARTUP_LIMIT_SECONDS,
    ) as server:
        startup = time.monotonic() - started
        with httpx.Client(base_url=server.url, timeout=30.0, headers=server.headers) as client:
            routed = client.post("/route", json={"deal": DEAL, "options": {"max_results": 3}})
            assert routed.status_code == 200, routed.text
            body = routed.json()
            assert len(body["partners"]) == 3
            assert body["model"]["version"] == "1"
            assert client.get(f"/decisions/{body['decision_id']}").json()["response"] == body
            assert client.post("/route", json={"deal": DEAL | {"amount": -1}}).status_code == 422
            fitted = client.post("/ipp_fit", json={"prospects": [PROSPECT, PROSPECT | {"prospect_id": "b"}]})
            assert fitted.status_code == 200, fitted.text
            assert [item["prospect_id"] for item in fitted.json()["prospects"]] == ["acme", "b"]
            assert fitted.json()["model"]["name"] == "partnermatch-ipp"
            assert client.get("/white_space").json()["cells"]
            assert client.get("/app/recruiters", headers={"Authorization": ""}).status_code == 200  # public
            team_deal = DEAL | {"products": ["firewall", "sd-wan", "storage"]}
            teams = client.post("/team", json={"deal": team_deal, "options": {"top_k": 2}})
            assert teams.status_code == 200, teams.text
            assert len(teams.json()["teams"]) == 2 and teams.json()["model"]["name"] == "partnermatch-team"
            batch = {"deals": [{"deal": DEAL}] * 4, "options": {"capacity_per_partner": 1}}
            planned = client.post("/route/batch", json=batch)
            assert planned.status_code == 200, planned.text
            assert planned.json()["global_plan"]["expected_wins"] >= planned.json()["greedy"]["expected_wins"] - 1e-9
            asked = {"deal": DEAL, "options": {"max_results": 1}, "partner_id": body["partners"][2]["partner_id"]}
            explained = client.post("/route/why_not", json=asked)
            assert explained.status_code == 200, explained.text
            assert explained.json()["compared_with"] == body["partners"][0]["partner_id"]
            for probe in ("/healthz", "/livez", "/readyz"):
                assert client.get(probe).status_code == 200
            metrics = client.get("/metrics", headers={"Authorization": ""})  # no key needed
            assert metrics.status_code == 200
            assert "bentoml_service_request_total" in metrics.text
            assert 'endpoint="/route"' in metrics.text
        process = server.process
    assert startup < STARTUP_LIMIT_SECONDS
    assert process.poll() is not None  # stopped with its workers


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    assert {"error", "field", "reason", "problems"} <= body.keys()
    return body


@pytest.mark.integration
def test_bentoml_serve_guards_the_api_and_replays_retries(smoke_store: Path, tmp_path: Path) -> None:
    """Over real HTTP: the served contract has the model's vocabularies; 401, 403, 413, 415, 429 and
    unknown paths answer the one error shape; a retried request gets its original decision back."""
    database = sqlite_url(tmp_path / "decisions.sqlite")
    with running_service(Paths.from_environment(), database, tmp_path / "server.log", STARTUP_LIMIT_SECONDS) as server:
        keys = KeyStore(database)
        reader = keys.create("reader", {Scope.READ_DECISIONS}).token
        slow = keys.create("slow", {Scope.ROUTE}, RateLimit(per_second=0.01, burst=1)).token
        keys.close()
        body = {"deal": DEAL, "options": {"max_results": 2}}
        with httpx.Client(base_url=server.url, timeout=30.0, headers=server.headers) as client:
            spec = client.get("/docs.json", headers={"Authorization": ""}).json()
            region = spec["components"]["schemas"]["DealIn"]["properties"]["region"]
            assert DEAL["region"] in region["enum"]
            assert set(spec["paths"]["/route"]["post"]["responses"]) >= {"401", "403", "413", "415", "422", "429"}

            assert "Bearer" in _error(client.post("/route", json=body, headers={"Authorization": ""}), 401)["error"]
            _error(client.post("/route", json=body, headers={"Authorization": f"Bearer {reader}"}), 403)
            _error(
                client.post(
                    "/route", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}
                ),
                413,
            )
            _error(
                client.post("/route", content=b"deal=1", headers={"content-type": "multipart/form-data; boundary=x"}),
                415,
            )
            _error(client.get("/no-such-path"), 404)
            _error(client.get("/route"), 405)

            limited = {"Authorization": f"Bearer {slow}"}
            assert client.post("/route", json=body, headers=limited).status_code == 200
            throttled = client.post("/route", json=body, headers=limited)
            _error(throttled, 429)
            assert int(throttled.headers["retry-after"]) >= 1

            retry = {"Idempotency-Key": "crm-42"}
            first = client.post("/route", json=body, headers=retry)
            again = client.post("/route", json=body, headers=retry)
            assert first.status_code == again.status_code == 200
            assert again.json() == first.json()
            assert again.headers["idempotent-replayed"] == "true"
            assert "idempotent-replayed" not in first.headers
            changed = {"deal": DEAL, "options": {"max_results": 3}}
            _error(client.post("/route", json=changed, headers=retry), 409)


@pytest.mark.slow
@pytest.mark.integration
def test_bench_route_at_a_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from partnermatch.bench.route import bench_route
    from training.config import load_train_config

    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    config = load_train_config(overrides={"encoder": "hashing-32", "ecosystem": {"partners": 400, "deals": 3000}})
    results = bench_route(config, Paths.from_environment(), requests=30)
    assert results["requests"] == 30
    assert results["recall_at_10"] >= 0.95
    assert 0 < results["p50_ms"] <= results["p95_ms"] <= results["p99_ms"]
    assert results["server_rss_mb"] > 0
    assert results["brute_force_agrees"]
    assert results["brute_force"]["partners_scored"] == 400
    assert set(results) >= {
        "service",
        "brute_force",
        "eligible_scan",
        "speedup_vs_brute_force",
        "speedup_vs_eligible_scan",
        "throughput_rps",
        "partners",
    }
    json.dumps(results)


@pytest.mark.slow
@pytest.mark.integration
def test_bench_load_with_one_and_two_workers_at_a_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from partnermatch.bench.load import LoadSettings, bench_load
    from training.config import load_train_config

    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    config = load_train_config(overrides={"encoder": "hashing-32", "ecosystem": {"partners": 300, "deals": 2000}})
    settings = LoadSettings(concurrency=4, seconds=2.0, workers=(1, 2), distinct_deals=20)
    results = bench_load(config, Paths.from_environment(), settings)
    for workers in (1, 2):
        run = results[f"workers_{workers}"]
        assert run["workers"] == workers and run["errors"] == 0
        assert run["requests_ok"] > 0 and run["throughput_rps"] > 0
        assert 0 < run["latency"]["p50_ms"] <= run["latency"]["p99_ms"]
        assert run["healthz"]["polls"] > 0 and run["healthz"]["errors"] == 0
        assert 0 < run["peak_uss_mb"] <= run["peak_pss_mb"] <= run["peak_rss_mb"]
    assert results["ratios"]["workers"] == [1, 2]
    assert results["workers_2"]["peak_pss_mb"] > results["workers_1"]["peak_pss_mb"]  # one more process
    json.dumps(results)


@pytest.mark.integration
def test_bench_load_promotes_a_challenger_under_load_without_a_failed_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from partnermatch.bench.load import LoadSettings, bench_load
    from training.config import load_train_config

    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    config = load_train_config(overrides={"encoder": "hashing-32", "ecosystem": {"partners": 300, "deals": 2000}})
    settings = LoadSettings(
        concurrency=4, seconds=6.0, workers=(1, 2), distinct_deals=20, promote_during=True, reload_poll_seconds=0.5
    )
    results = bench_load(config, Paths.from_environment(), settings)
    for workers, via in ((1, "POST /admin/reload"), (2, "poll")):
        run = results[f"workers_{workers}"]
        assert run["errors"] == 0 and run["healthz"]["errors"] == 0
        promotion = run["promotion"]
        baseline, challenger = promotion["baseline_version"], promotion["challenger_version"]
        assert baseline != challenger and promotion["via"] == via
        assert promotion["workers"] == workers and promotion["all_workers_switched"]
        assert promotion["shares_before"] == {baseline: 1.0}
        assert promotion["shares_after"].get(challenger, 0.0) > 0.0
        assert promotion["challenger_first_after_s"] > 0.0
    assert results["workers_1"]["promotion"]["admin_reload"]["model_version"] == challenger
    json.dumps(results)


@pytest.mark.slow
@pytest.mark.integration
def test_bench_ipp_in_process_and_over_http_at_a_tiny_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from features.synthetic import EcosystemConfig
    from partnermatch.bench.ipp import bench_ipp
    from training.ipp import IppConfig

    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    ecosystem = EcosystemConfig(partners=300, deals=3000)
    config = IppConfig(ecosystem=ecosystem, encoder="hashing-32", n_estimators=60, bootstrap_resamples=20)
    results = bench_ipp(config, Paths.from_environment(), singles=20)
    over_http = results["http"]
    assert over_http["single"]["requests"] == 20
    assert 0 < over_http["single"]["p50_ms"] <= over_http["single"]["p99_ms"]
    assert (
        over_http["batch_32"]["requests"] == 2
        and 0 < over_http["batch_32"]["p50_ms"] <= over_http["batch_32"]["p99_ms"]
    )
    assert over_http["batch"]["prospects"] > 100 and over_http["batch"]["prospects_per_second"] > 0
    assert results["batch"]["prospects"] == 300
    json.dumps(results)


@pytest.mark.integration
def test_bench_feedback_at_a_smoke_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from partnermatch.bench.feedback import FeedbackSettings, bench_feedback
    from training.config import load_train_config

    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    config = load_train_config(overrides={"encoder": "hashing-32", "ecosystem": {"partners": 300, "deals": 2000}})
    settings = FeedbackSettings(events=60, decisions=10, concurrency=4, samples=8, workers=2)
    results = bench_feedback(config, Paths.from_environment(), settings)
    feedback, after = results["feedback"], results["route_after_feedback"]
    assert (feedback["accepted"], feedback["outcomes"], feedback["errors"]) == (60, 10, 0)
    assert results["accepted_events_per_s"] > 0
    # Every route after feedback was checked against the live load; each filled partner was left out.
    assert after["routes"] >= 8 and after["left_out_at_capacity"] == after["partners_filled"] >= 1
    assert 0 < after["latency"]["p50_ms"] <= after["latency"]["p99_ms"] == results["route_after_feedback_p99_ms"]
    json.dumps(results)
