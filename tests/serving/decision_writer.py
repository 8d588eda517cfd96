"""A process that appends decisions to the database at argv[1] until it is killed, printing each
decision id on stdout once `DecisionLog.append` has returned (committed): the kill -9 test's writer.

    python -m tests.serving.decision_writer URL
"""

from __future__ import annotations

import itertools
import sys

from serving.decision_log import DecisionLog


def append_forever(url: str) -> None:
    log = DecisionLog(url)
    for number in itertools.count():
        decision_id = f"d{number}"
        log.append(decision_id, "partnermatch-win", "1", f'{{"deal": {number}}}', "{}")
        print(decision_id, flush=True)


if __name__ == "__main__":
    append_forever(sys.argv[1])
