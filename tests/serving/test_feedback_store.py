"""The feedback store on SQLite and PostgreSQL: replays, conflicts, order, concurrent writers numbered
in commit order, and a feedback file of the pre-database layout imported with its numbers."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.feedback_store import FeedbackEvent, FeedbackStore, FeedbackStoreConflictError, StoredFeedback
from serving.stores import import_legacy_feedback
from tests.serving.store_writer import acknowledged_before_kill

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


def test_events_round_trip_in_acceptance_order(store_url: str) -> None:
    store = FeedbackStore(store_url)
    first = store.record(_outcome("e1", "d1", ("P1", "P2")))
    engaged = FeedbackEvent("e2", "b", NOW, "engagement", NOW, ("P3",), engagement_kind="portal_login")
    second = store.record(engaged)
    assert (first.seq, second.seq, store.latest_seq()) == (1, 2, 2)
    assert [item.event for item in store.since(0)] == [first.event, engaged]
    assert [item.seq for item in store.since(1)] == [2]
    store.close()


def test_same_id_same_body_replays_and_another_body_conflicts(store_url: str) -> None:
    store = FeedbackStore(store_url)
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


def test_every_acknowledged_event_survives_kill_9_of_its_writer(store_url: str) -> None:
    acknowledged = acknowledged_before_kill(store_url, "feedback", 100)
    store = FeedbackStore(store_url)
    stored = [item.event.event_id for item in store.since(0)]
    store.close()
    assert set(acknowledged) <= set(stored) and len(stored) == len(set(stored))


def test_concurrent_writers_are_numbered_in_commit_order_and_close_an_attempt_once(store_url: str) -> None:
    writers, per_writer = 4, 15
    stores = [FeedbackStore(store_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)

    def write(number: int) -> list[StoredFeedback]:
        store, recorded = stores[number], []
        barrier.wait()
        for item in range(per_writer):
            recorded.append(store.record(_outcome(f"w{number}-{item}", f"d{number}-{item}", ("P1",))))
            # Every writer closes the same attempt of decision "shared" under its own event id: one wins.
            try:
                recorded.append(store.record(_outcome(f"shared-{number}-{item}", "shared", ("P9",))))
            except FeedbackStoreConflictError as conflict:
                assert conflict.field == "partner_ids"
        return recorded

    with ThreadPoolExecutor(max_workers=writers) as pool:
        recorded = [item for items in pool.map(write, range(writers)) for item in items]
    stored = stores[0].since(0)
    assert sorted(item.seq for item in recorded) == [item.seq for item in stored]  # none lost, none doubled
    assert len(stored) == writers * per_writer + 1
    assert len({item.event.event_id for item in stored}) == len(stored)
    assert [item.event.event_id for item in stored if item.event.decision_id == "shared"] != []
    assert sum(item.event.decision_id == "shared" for item in stored) == 1
    for store in stores:
        store.close()


LEGACY_FEEDBACK_SCHEMA = """
CREATE TABLE feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, body_digest TEXT NOT NULL,
    received_at TEXT NOT NULL, kind TEXT NOT NULL, occurred_at TEXT NOT NULL, partner_ids TEXT NOT NULL,
    engagement_kind TEXT, decision_id TEXT, deal_id TEXT, won INTEGER, amount REAL, deal_created_at TEXT,
    deal_region TEXT, deal_products TEXT
);
CREATE INDEX feedback_by_decision ON feedback (decision_id);
"""


def legacy_feedback_file(path: Path) -> list[tuple[int, str]]:
    """A feedback file as the code before the database wrote it (`feedback.sqlite`), with an outcome
    numbered 3 and an engagement event numbered 7; their (seq, event id)."""
    with sqlite3.connect(path) as legacy:
        legacy.executescript(LEGACY_FEEDBACK_SCHEMA)
        time = "2025-03-01T12:00:00.000000+00:00"
        legacy.execute(
            "INSERT INTO feedback VALUES (3, 'old-won', 'a', ?, 'outcome', ?, 'P1|P2', NULL, 'd-old', 'D1', 1, 1200.5,"
            " ?, 'dach', 'firewall|sd-wan')",
            (time, time, time),
        )
        legacy.execute(
            "INSERT INTO feedback VALUES (7, 'old-login', 'b', ?, 'engagement', ?, 'P3', 'portal_login', NULL, NULL,"
            " NULL, NULL, NULL, NULL, NULL)",
            (time, time),
        )
    legacy.close()
    return [(3, "old-won"), (7, "old-login")]


def test_a_legacy_feedback_file_is_imported_with_its_numbers(store_url: str, tmp_path: Path) -> None:
    legacy = tmp_path / "feedback.sqlite"
    expected = legacy_feedback_file(legacy)
    assert import_legacy_feedback(store_url, legacy) == 2
    assert not legacy.exists() and (tmp_path / "feedback.sqlite.imported").exists()
    store = FeedbackStore(store_url)
    stored = store.since(0)
    assert [(item.seq, item.event.event_id) for item in stored] == expected
    won = stored[0].event
    assert (won.won, won.partner_ids, won.deal_products, won.amount) == (
        True,
        ("P1", "P2"),
        ("firewall", "sd-wan"),
        1200.5,
    )
    assert won.deal_created_at == NOW and stored[1].event.engagement_kind == "portal_login"
    assert store.record(_outcome("new", "d1", ("P1",))).seq == 8  # numbering continues after the file's
    assert import_legacy_feedback(store_url, legacy) == 0  # renamed: nothing more to import
    store.close()


def test_a_legacy_file_clashing_with_the_database_is_refused_and_kept(store_url: str, tmp_path: Path) -> None:
    store = FeedbackStore(store_url)
    for number in range(3):  # takes numbers 1-3: the file's event 3 is another event
        store.record(_outcome(f"new-{number}", f"d{number}", ("P1",)))
    legacy = tmp_path / "feedback.sqlite"
    legacy_feedback_file(legacy)
    with pytest.raises(ValueError, match=r"feedback\.sqlite: its rows clash"):
        import_legacy_feedback(store_url, legacy)
    assert legacy.exists() and [item.event.event_id for item in store.since(0)] == ["new-0", "new-1", "new-2"]
    store.close()
