"""How the command line shows `features.progress.Progress`: a live bar on a terminal, plain lines otherwise.

- `TerminalProgress` (stderr is a terminal): a line per finished stage with its duration, and a live
  line for the current one: spinner, stage, bar, done/total, rate, elapsed and time remaining.
- `PlainProgress` (a pipe, a log file, CI): a line when a stage starts and, within it, a count line
  (done/total, rate, time remaining) at most every `interval` seconds, plus one when a count reaches
  its total. Its clock is injectable, so the throttling is testable without sleeping.
- `show_progress(console)`: the one that suits the console, for the duration of a block.

A stage may count several runs towards different totals (profiles, then deals): a total that changes
or a count that goes back starts a new run, with its own rate and time remaining.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from features.progress import Progress

PLAIN_INTERVAL_SECONDS = 5.0


def format_duration(seconds: float) -> str:
    """A duration for people: '7s', '3m05s', '2h04m' (rounded to the second, negatives as 0s)."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds_left:02d}s"
    hours, minutes_left = divmod(minutes, 60)
    return f"{hours}h{minutes_left:02d}m"


def format_rate(per_second: float) -> str:
    """Units per second: '1,234/s' from 10/s up, two significant digits below ('3.5/s', '0.25/s')."""
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.2g}/s"


@dataclass
class _CountRun:
    """Counts towards one total. `started` is the previous progress event (the run's work began
    there); the pace is measured from the first count on, so that loading a model before the first
    unit is done does not read as a slow rate."""

    total: int
    started: float
    first_done: int
    first_time: float
    done: int

    def per_second(self, now: float) -> float | None:
        """Units per second since the first count; None until time has passed since it."""
        if now <= self.first_time:
            return None
        return (self.done - self.first_done) / (now - self.first_time)


class PlainProgress:
    """Plain lines on `stream`, each prefixed by the time since this object was made:

        [    0s] embedding 2,000 profiles and 20,000 deals (minilm-onnx-int8)
        [    5s]   1,200/2,000 (60%), 240/s, 3s left
        [    8s]   2,000/2,000 in 8s (250/s)

    `clock` returns seconds (monotonic); `interval` is the least time between two lines, except that
    a count reaching its total is always written.
    """

    def __init__(
        self, stream: IO[str], clock: Callable[[], float] = time.monotonic, interval: float = PLAIN_INTERVAL_SECONDS
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._started = clock()
        self._last_event = self._started
        self._last_line = self._started
        self._run: _CountRun | None = None

    def step(self, message: str) -> None:
        now = self._clock()
        self._run = None
        self._last_event = now
        self._write(now, message)

    def count(self, done: int, total: int) -> None:
        now = self._clock()
        run = self._run
        if run is None or total != run.total or done < run.done:
            run = self._run = _CountRun(total, started=self._last_event, first_done=done, first_time=now, done=-1)
        reached_total = done >= total > run.done
        run.done = done
        self._last_event = now
        rate = run.per_second(now)
        if reached_total:
            took = now - run.started
            if rate is None and took > 0:  # one count for the whole run: its pace is the run's
                rate = done / took
            pace = f" ({format_rate(rate)})" if rate else ""
            self._write(now, f"  {done:,}/{total:,} in {format_duration(took)}{pace}")
        elif now - self._last_line >= self._interval:
            share = f" ({done / total:.0%})" if total else ""
            pace = f", {format_rate(rate)}, {format_duration((total - done) / rate)} left" if rate else ""
            self._write(now, f"  {done:,}/{total:,}{share}{pace}")

    def _write(self, now: float, text: str) -> None:
        self._last_line = now
        self._stream.write(f"[{format_duration(now - self._started):>6}] {text}\n")
        self._stream.flush()


class _CountColumn(ProgressColumn):
    """'done/total' with thousands separators; empty while a stage has no count."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")


class _RateColumn(ProgressColumn):
    """Units per second over rich's recent window; empty until there are two samples."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("" if speed is None else format_rate(speed), style="progress.data.speed")


class TerminalProgress:
    """A rich live display on `console`; use it as a context manager (the display runs inside).
    `clock` returns seconds (monotonic) for durations, rates and time remaining."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self._display = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            _CountColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            get_time=clock,
            transient=True,
        )
        self._task: TaskID | None = None
        self._stage = ""
        self._stage_started = 0.0

    def __enter__(self) -> TerminalProgress:
        self._display.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self._finish_stage()
        self._display.stop()

    def step(self, message: str) -> None:
        self._finish_stage()
        self._stage = message
        self._stage_started = self._display.get_time()
        self._task = self._display.add_task(message, total=None)

    def count(self, done: int, total: int) -> None:
        if self._task is None:  # counts before any stage: an unnamed one
            self.step("")
        assert self._task is not None
        task = next(task for task in self._display.tasks if task.id == self._task)
        if task.total != total or done < task.completed:
            # A new run of counts: rich's rate and time remaining start afresh.
            self._display.reset(self._task, total=total, completed=done)
        else:
            self._display.update(self._task, completed=done)

    def _finish_stage(self) -> None:
        """Print the stage that ends, with its duration, above the live line."""
        if self._task is None:
            return
        if self._stage:
            elapsed = format_duration(self._display.get_time() - self._stage_started)
            self._display.console.print(Text.assemble(("✓ ", "green"), self._stage, (f" ({elapsed})", "dim")))
        self._display.remove_task(self._task)
        self._task = None


@contextmanager
def show_progress(console: Console) -> Iterator[Progress]:
    """A live display when `console` is a terminal, else plain lines on its file."""
    if console.is_terminal:
        with TerminalProgress(console) as display:
            yield display
    else:
        yield PlainProgress(console.file)
