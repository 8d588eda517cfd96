"""A process that writes to the database at argv[1] until it is killed, printing each row's id on
stdout once the store's write has returned (committed): the kill -9 tests' writer. argv[2] says what
it writes: `decisions` (`DecisionLog.append`) or `feedback` (`FeedbackStore.record`, engagement events).

    python -m tests.serving.store_writer URL decisions|feedback
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackEvent, FeedbackStore

ROOT = Path(__file__).resolve().parents[2]


def _writer(url: str, kind: str) -> Callable[[int], str]:
    """A function writing row `number` and returning its id."""
    if kind == "decisions":
        log = DecisionLog(url)

        def decide(number: int) -> str:
            log.append(f"d{number}", "partnermatch-win", "1", f'{{"deal": {number}}}', "{}")
            return f"d{number}"

        return decide
    store = FeedbackStore(url)

    def engage(number: int) -> str:
        now = datetime.now(UTC)
        store.record(FeedbackEvent(f"e{number}", "x", now, "engagement", now, ("P1",), engagement_kind="portal_login"))
        return f"e{number}"

    return engage


def append_forever(url: str, kind: str) -> None:
    write = _writer(url, kind)
    for number in itertools.count():
        print(write(number), flush=True)


def acknowledged_before_kill(url: str, kind: str, count: int) -> list[str]:
    """Run a writer of `kind` on `url`, SIGKILL it once it acknowledged `count` rows; every id it
    acknowledged (those still in the pipe included)."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.serving.store_writer", url, kind],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(count)]
    os.kill(writer.pid, signal.SIGKILL)
    acknowledged += writer.stdout.read().split()  # printed before the kill, still in the pipe
    assert writer.wait() == -signal.SIGKILL
    assert all(acknowledged), "the writer died before acknowledging"
    return acknowledged


if __name__ == "__main__":
    append_forever(sys.argv[1], sys.argv[2])
