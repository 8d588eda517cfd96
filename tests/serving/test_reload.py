"""Hot reload: requests in flight across a promotion all succeed, and answers switch to the new version;
GET /models and POST /admin/reload on the service."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from features.synthetic import EcosystemConfig
from models.registry import REGISTERED_WIN_MODEL, Paths
from serving.reload import RELOAD_SECONDS_ENV, ServedChampion, reload_seconds
from serving.schemas import RouteRequest
from serving.service import load_router_of
from tests.serving.conftest import deal_body
from training.config import TrainConfig
from training.stages import run_training
from training.tracking import mark_version
from training.workflows import demo_ecosystem

TINY = TrainConfig(encoder="hashing-32", ecosystem=EcosystemConfig(partners=150, deals=1500, seed=7))


def test_reload_seconds_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RELOAD_SECONDS_ENV, raising=False)
    assert reload_seconds() == 30.0
    monkeypatch.setenv(RELOAD_SECONDS_ENV, "0")
    assert reload_seconds() == 0.0
    monkeypatch.setenv(RELOAD_SECONDS_ENV, "-1")
    with pytest.raises(ValueError, match=RELOAD_SECONDS_ENV):
        reload_seconds()


@pytest.mark.integration
def test_requests_in_flight_across_a_promotion_all_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store of its own: MLflow exports the last tracking URI it was given (the session's smoke store).
    monkeypatch.setenv("PARTNERMATCH_MLRUNS", str(tmp_path / "mlruns"))
    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = Paths.from_environment()
    ecosystem, truth = demo_ecosystem(TINY.ecosystem, paths)
    run_training(TINY, paths, ecosystem, truth)
    served = ServedChampion(paths, load_router_of)
    assert served.current.version.version == "1"
    assert served.current.training_window is not None and served.current.training_window.rows > 0
    assert served.reload().reloaded is False

    requests = [RouteRequest.model_validate({"deal": deal_body(ecosystem.deals, row)}) for row in range(40)]
    versions: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        index = 0
        while not stop.is_set():
            try:
                versions.append(served.current.router.route(requests[index % len(requests)]).model.version)
            except BaseException as error:  # any failure fails the test below
                failures.append(error)
            index += 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = [pool.submit(client) for _ in range(4)]
        second = run_training(TINY, paths, ecosystem, truth).version  # requests keep flowing meanwhile
        mark_version(paths, REGISTERED_WIN_MODEL, second.version, promoted=True)
        answered_before = len(versions)
        outcome = served.reload()  # loads version 2 while version 1 keeps answering
        swapped_at = len(versions)
        while len(versions) < swapped_at + 40:
            stop.wait(0.05)
        stop.set()
        for future in clients:
            future.result()

    assert failures == []
    assert outcome.reloaded and outcome.previous_version == "1" and outcome.current.version.version == "2"
    assert answered_before > 0 and versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}
    assert "2" not in versions[:answered_before]
    assert set(versions[swapped_at + 4 :]) == {"2"}  # at most one old answer per client after the swap


def test_models_lists_the_champion_with_its_window_and_drift(client: Any) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["version"] == "1"
    (champion,) = body["models"]
    assert (champion["name"], champion["version"], champion["alias"]) == (REGISTERED_WIN_MODEL, "1", "champion")
    assert champion["encoder"] == "hashing-32"
    assert champion["training_window"]["start"] < champion["training_window"]["end"]
    assert champion["drift"]["status"] in {"unknown", "ok", "warn", "alert"}
    assert (champion["drift"]["warn"], champion["drift"]["alert"]) == (0.1, 0.25)


def test_admin_reload_keeps_an_unchanged_champion(client: Any) -> None:
    response = client.post("/admin/reload")
    assert response.status_code == 200
    assert response.json() == {
        "model": {"name": REGISTERED_WIN_MODEL, "version": "1", "encoder": "hashing-32"},
        "reloaded": False,
        "previous_version": "1",
    }


def test_models_and_reload_need_their_scopes(client: Any, key_store: Any) -> None:
    from serving.keys import Scope
    from serving.ratelimit import RateLimit

    route_only = key_store.create("route-only", {Scope.ROUTE}, RateLimit(1e6, 1_000_000)).token
    reader = key_store.create("models-reader", {Scope.READ_MODELS}, RateLimit(1e6, 1_000_000)).token
    assert client.get("/models", headers={"Authorization": f"Bearer {route_only}"}).status_code == 403
    assert client.get("/models", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
