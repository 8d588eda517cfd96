"""How long-running work reports progress: named stages, and counts within a stage.

Library code takes a `Progress` and calls `step` when a stage starts and `count` as it advances;
the command line decides how to show it (a bar with an ETA on a terminal, a line every few seconds
otherwise). `SILENT` is the default for callers that want nothing shown.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def step(self, message: str) -> None:
        """A new stage starts (`message` says what it does, with its size where known)."""
        ...

    def count(self, done: int, total: int) -> None:
        """Within the current stage, `done` of `total` units are finished (0 <= done <= total)."""
        ...


class _Silent:
    def step(self, message: str) -> None:
        """Shows nothing."""

    def count(self, done: int, total: int) -> None:
        """Shows nothing."""


SILENT: Progress = _Silent()
