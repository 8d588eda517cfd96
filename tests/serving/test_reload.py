"""Hot reload: requests in flight across a promotion all succeed, answers switch to the new version,
and the new champion routes with the live feedback its bundle lacks; what is unchanged is kept;
GET /models and POST /admin/reload on the service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from features.synthetic import EcosystemConfig
from models.registry import (
    CHALLENGER,
    CHAMPION,
    FEEDBACK_SEQUENCE_TAG,
    REGISTERED_HEALTH_MODEL,
    REGISTERED_IPP_MODEL,
    REGISTERED_SENTIMENT_MODEL,
    REGISTERED_TEAM_MODEL,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
)
from serving.decision_log import DecisionLog
from serving.feedback import accept_feedback
from serving.feedback_store import FeedbackStore
from serving.models import model_changes
from serving.reload import RELOAD_SECONDS_ENV, HotSwap, Loaded, refreshed, reload_seconds
from serving.schemas import FeedbackRequest, ModelChange, RouteRequest
from serving.service import ServedModels, load_served, prepare_database
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


def _version(number: str, run_id: str = "run", name: str = REGISTERED_WIN_MODEL) -> RegisteredVersion:
    return RegisteredVersion(name=name, version=number, run_id=run_id, aliases=(CHAMPION,), tags={})


def _loaded(version: RegisteredVersion) -> Loaded[str]:
    return Loaded(f"model v{version.version}", version, CHAMPION, None, None)


def test_refreshed_keeps_the_same_version_and_loads_another() -> None:
    first = _loaded(_version("1"))
    loads: list[str] = []

    def load(version: RegisteredVersion) -> Loaded[str]:
        loads.append(version.version)
        return _loaded(version)

    assert refreshed(first, _version("1"), load) is first
    assert refreshed(first, None, load) is None
    assert refreshed(first, _version("2"), load) == _loaded(_version("2"))
    assert refreshed(first, _version("1", run_id="other run"), load) == _loaded(_version("1", run_id="other run"))
    assert refreshed(None, _version("1"), load) == first
    assert loads == ["2", "1", "1"]


def test_a_failed_reload_swaps_nothing() -> None:
    outcomes: list[int | Exception] = [1, RuntimeError("registry down"), 2]

    def load(previous: int | None) -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    served = HotSwap(load)
    assert served.current == 1
    with pytest.raises(RuntimeError, match="registry down"):
        served.reload()
    assert served.current == 1
    assert served.reload() == (1, 2) and served.current == 2


def test_polling_reloads_until_stopped() -> None:
    loads: list[int | None] = []
    reloaded = threading.Event()

    def load(previous: int | None) -> int:
        loads.append(previous)
        if len(loads) == 3:
            reloaded.set()
        return len(loads)

    served = HotSwap(load)
    assert served.poll_every(0) is None
    thread = served.poll_every(0.01)
    assert thread is not None and reloaded.wait(10)
    served.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert loads[:3] == [None, 1, 2] and served.current == len(loads)


def test_model_changes_name_what_a_reload_swapped() -> None:
    win_1, win_2 = _loaded(_version("1")), _loaded(_version("2"))
    ipp = _loaded(_version("4", name=REGISTERED_IPP_MODEL))
    before = {(REGISTERED_WIN_MODEL, CHAMPION): win_1, (REGISTERED_IPP_MODEL, CHAMPION): ipp}
    assert model_changes(before, dict(before)) == []
    after = {(REGISTERED_WIN_MODEL, CHAMPION): win_2, (REGISTERED_IPP_MODEL, CHAMPION): None}
    assert model_changes(before, after) == [
        ModelChange(name=REGISTERED_WIN_MODEL, alias=CHAMPION, previous_version="1", version="2"),
        ModelChange(name=REGISTERED_IPP_MODEL, alias=CHAMPION, previous_version="4", version=None),
    ]


@dataclass(frozen=True)
class ReloadStore:
    paths: Paths
    store: FeedbackStore
    decisions: DecisionLog
    partner_ids: list[str]
    requests: list[RouteRequest]


@pytest.fixture
def reload_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReloadStore]:
    """A store of its own with one win champion (MLflow exports the last tracking URI it was given:
    the session's smoke store otherwise); no shadow, no other model."""
    monkeypatch.setenv("PARTNERMATCH_MLRUNS", str(tmp_path / "mlruns"))
    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PARTNERMATCH_DECISION_LOG", str(tmp_path / "decisions.sqlite"))
    monkeypatch.delenv("PARTNERMATCH_SHADOW", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = Paths.from_environment()
    ecosystem, truth = demo_ecosystem(TINY.ecosystem, paths)
    run_training(TINY, paths, ecosystem, truth)
    url = prepare_database(paths)
    store, decisions = FeedbackStore(url), DecisionLog(url)
    requests = [RouteRequest.model_validate({"deal": deal_body(ecosystem.deals, row)}) for row in range(40)]
    yield ReloadStore(paths, store, decisions, ecosystem.partners["partner_id"].tolist(), requests)
    decisions.close()


def _engagement(setup: ReloadStore, served: HotSwap[ServedModels], number: int, occurred_at: datetime) -> int:
    """Accept one engagement event through the served live router; its sequence number."""
    request = FeedbackRequest.model_validate(
        {
            "event_id": f"event-{number}",
            "event": {
                "type": "engagement",
                "partner_id": setup.partner_ids[number % len(setup.partner_ids)],
                "kind": "portal_login",
                "occurred_at": occurred_at.isoformat(),
            },
        }
    )
    live = served.current.win.model
    return accept_feedback(request, setup.store, setup.decisions, live, datetime.now(UTC)).sequence


@pytest.mark.integration
def test_requests_in_flight_across_a_promotion_all_succeed(
    reload_store: ReloadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, now = reload_store, datetime.now(UTC).replace(microsecond=0)  # histories keep whole seconds
    served = HotSwap(lambda previous: load_served(setup.paths, setup.store, setup.decisions, previous))
    assert served.current.win.version.version == "1"
    assert served.current.win.training_window is not None and served.current.win.training_window.rows > 0
    assert (served.current.shadow, served.current.teams, served.current.ipp) == (None, None, None)
    unchanged, reloaded = served.reload()
    assert reloaded.win is unchanged.win  # nothing moved: the very same router, not a reload
    assert model_changes(unchanged.slots(), reloaded.slots()) == []
    # Feedback before the promotion: the later event first, so the live history's end tells which
    # events a router holds.
    learned = _engagement(setup, served, 0, now - timedelta(minutes=1))
    _engagement(setup, served, 1, now - timedelta(minutes=2))

    answers: list[tuple[int, str]] = []  # (client, model version), in the order they came back
    failures: list[BaseException] = []
    stop = threading.Event()

    def client(number: int) -> None:
        index = 0
        while not stop.is_set():
            try:  # one read of the served models per request, as the service does
                router = served.current.win.model.current()
                answers.append((number, router.route(setup.requests[index % len(setup.requests)]).model.version))
            except BaseException as error:  # any failure fails the test below
                failures.append(error)
            index += 1

    def feedback() -> None:
        number = 2
        while not stop.is_set():
            try:
                _engagement(setup, served, number, now - timedelta(minutes=3))
            except BaseException as error:
                failures.append(error)
            number += 1
            stop.wait(0.5)

    with ThreadPoolExecutor(max_workers=4) as pool:
        clients = [pool.submit(client, number) for number in range(3)] + [pool.submit(feedback)]
        second = run_training(TINY, setup.paths, *demo_ecosystem(TINY.ecosystem, setup.paths)).version
        # The new bundle learned the first event (as `partnermatch retrain` tags it), not the later ones.
        MlflowClient().set_model_version_tag(REGISTERED_WIN_MODEL, second.version, FEEDBACK_SEQUENCE_TAG, str(learned))
        mark_version(setup.paths, REGISTERED_WIN_MODEL, second.version, True, "test: promoted", {})
        answered_before = len(answers)
        before, after = served.reload()  # loads version 2 while version 1 keeps answering
        swapped_at = len(answers)
        while len(answers) < swapped_at + 40:
            stop.wait(0.05)
        stop.set()
        for future in clients:
            future.result()

    versions = [version for _, version in answers]
    feedback_events = setup.store.latest_seq()
    print(
        f"reload under load: {len(versions)} routes ({answered_before} before the reload started, "
        f"{swapped_at} when it ended), {feedback_events} feedback events, {len(failures)} failures"
    )
    assert failures == []
    assert (before.win.version.version, after.win.version.version) == ("1", "2")
    assert model_changes(before.slots(), after.slots()) == [
        ModelChange(name=REGISTERED_WIN_MODEL, alias=CHAMPION, previous_version="1", version="2")
    ]
    assert answered_before > 0 and versions[0] == "1" and versions[-1] == "2"
    assert "2" not in versions[:answered_before]
    # Once the swap was done, each client finished at most the one request it had started on the old model.
    late_old = [number for number, version in answers[swapped_at:] if version == "1"]
    assert len(late_old) == len(set(late_old)) <= 3
    # The new champion holds the feedback its bundle lacks (every event after `learned`), no more.
    old_live, new_live = before.win.model, after.win.model
    assert (old_live.applied_after, new_live.applied_after) == (0, learned)
    assert feedback_events > 2
    assert old_live.current().context.history_end == (now - timedelta(minutes=1)).replace(tzinfo=None)
    assert new_live.current().context.history_end == (now - timedelta(minutes=2)).replace(tzinfo=None)
    assert new_live.current().context.history_end > new_live.base.context.history_end

    # Shadow mode on, version 1 as challenger, then promoted back: the shadow's router becomes the
    # champion's as it is (loaded and live already), not a second load.
    monkeypatch.setenv("PARTNERMATCH_SHADOW", CHALLENGER)
    mark_version(setup.paths, REGISTERED_WIN_MODEL, "1", False, "test: challenger", {})
    _, shadowed = served.reload()
    assert shadowed.win is after.win
    assert shadowed.shadow is not None and shadowed.shadow.version.version == "1"
    assert shadowed.shadow.model.live.applied_after == 0
    mark_version(setup.paths, REGISTERED_WIN_MODEL, "1", True, "test: promoted back", {})
    _, promoted = served.reload()
    assert promoted.win.version.version == "1"
    assert promoted.win.model is shadowed.shadow.model.live


def test_models_lists_every_served_model_with_its_window_and_drift(client: Any) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["name"] == REGISTERED_WIN_MODEL
    listed = {(model["name"], model["alias"]): model for model in body["models"]}
    assert set(listed) == {
        (REGISTERED_WIN_MODEL, CHAMPION),
        (REGISTERED_WIN_MODEL, CHALLENGER),  # the shadow
        (REGISTERED_TEAM_MODEL, CHAMPION),
        (REGISTERED_IPP_MODEL, CHAMPION),
        (REGISTERED_SENTIMENT_MODEL, CHAMPION),
        (REGISTERED_HEALTH_MODEL, CHAMPION),
    }
    champion = listed[(REGISTERED_WIN_MODEL, CHAMPION)]
    assert champion["version"] == body["model"]["version"]
    assert champion["encoder"] == body["model"]["encoder"]
    assert champion["training_window"]["start"] < champion["training_window"]["end"]
    assert champion["training_window"]["rows"] > 0
    assert listed[(REGISTERED_HEALTH_MODEL, CHAMPION)]["encoder"] is None
    for model in body["models"]:
        assert model["drift"]["status"] in {"unknown", "ok", "warn", "alert"}
        assert (model["drift"]["warn"], model["drift"]["alert"]) == (0.1, 0.25)


def test_admin_reload_keeps_unchanged_models(client: Any) -> None:
    served = client.get("/models").json()["model"]
    response = client.post("/admin/reload")
    assert response.status_code == 200
    assert response.json() == {"model": served, "reloaded": False, "changes": []}


def test_models_and_reload_need_their_scopes(client: Any, key_store: Any) -> None:
    from serving.keys import Scope
    from serving.ratelimit import RateLimit

    route_only = key_store.create("route-only", {Scope.ROUTE}, RateLimit(1e6, 1_000_000)).token
    reader = key_store.create("models-reader", {Scope.READ_MODELS}, RateLimit(1e6, 1_000_000)).token
    assert client.get("/models", headers={"Authorization": f"Bearer {route_only}"}).status_code == 403
    assert client.get("/models", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
