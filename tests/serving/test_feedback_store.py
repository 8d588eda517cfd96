"""The feedback store: replays, conflicts, order, and no acknowledged event lost to a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.feedback_store import FeedbackEvent, FeedbackStore, FeedbackStoreConflictError

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _outcome(event_id: str, decision_id: str, partners: tuple[str, ...], digest: str = "a") -> FeedbackEvent:
    return FeedbackEvent(
        event_id=event_id,
        body_digest=digest,
        received_at=NOW,
        kind="outcome",
        occurred_at=NOW,
        partner_ids=partners,
        decision_id=decision_id,
        deal_id="D1",
        won=True,
        amount=1200.5,
        deal_created_at=NOW,
        deal_region="dach",
        deal_products=("firewall", "sd-wan"),
    )


def test_events_round_trip_in_acceptance_order(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    first = store.record(_outcome("e1", "d1", ("P1", "P2")))
    engaged = FeedbackEvent("e2", "b", NOW, "engagement", NOW, ("P3",), engagement_kind="portal_login")
    second = store.record(engaged)
    assert (first.seq, second.seq, store.latest_seq()) == (1, 2, 2)
    assert [item.event for item in store.since(0)] == [first.event, engaged]
    assert [item.seq for item in store.since(1)] == [2]
    store.close()


def test_same_id_same_body_replays_and_another_body_conflicts(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    original = store.record(_outcome("e1", "d1", ("P1",)))
    again = store.record(_outcome("e1", "d1", ("P1",)))
    assert again.replayed and not original.replayed and again.seq == original.seq
    with pytest.raises(FeedbackStoreConflictError) as caught:
        store.record(_outcome("e1", "d1", ("P1",), digest="other"))
    assert caught.value.field == "event_id"
    with pytest.raises(FeedbackStoreConflictError, match=r"already has an outcome for \['P1'\]") as second:
        store.record(_outcome("e2", "d1", ("P2", "P1")))
    assert second.value.field == "partner_ids"
    store.record(_outcome("e3", "d1", ("P2",)))  # another partner of the same deal: a team member
    assert store.latest_seq() == 2
    store.close()


WRITER = """
import sys
from datetime import UTC, datetime
from serving.feedback_store import FeedbackEvent, FeedbackStore
store = FeedbackStore(sys.argv[1])
now = datetime.now(UTC)
with open(sys.argv[2], "a", buffering=1) as acknowledged:
    for number in range(1_000_000):
        event_id = f"e{number}"
        store.record(FeedbackEvent(event_id, "x", now, "engagement", now, ("P1",), engagement_kind="portal_login"))
        acknowledged.write(event_id + "\\n")
"""


def test_a_writer_killed_with_sigkill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    database, acknowledged = tmp_path / "feedback.sqlite", tmp_path / "acknowledged.txt"
    environment = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(database), str(acknowledged)], env=environment)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not acknowledged.exists() or len(acknowledged.read_text().split()) < 20):
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    acked = acknowledged.read_text().split()
    assert len(acked) >= 20, "the writer acknowledged events before it was killed"
    store = FeedbackStore(database)
    stored = {item.event.event_id for item in store.since(0)}
    store.close()
    assert set(acked) <= stored
