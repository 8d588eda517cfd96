"""Progress renderers: plain throttled lines (fake clock, no sleeping) and the terminal display."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from partnermatch.progress import (
    PlainProgress,
    TerminalProgress,
    format_duration,
    format_rate,
    show_progress,
)


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (7.0, "7s"), (59.6, "1m00s"), (185.0, "3m05s"), (7440.0, "2h04m"), (-3.0, "0s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("per_second", "text"), [(12345.6, "12,346/s"), (10.0, "10/s"), (3.456, "3.5/s"), (0.25, "0.25/s")]
)
def test_format_rate(per_second: float, text: str) -> None:
    assert format_rate(per_second) == text


def test_plain_writes_a_line_per_stage_with_the_time_since_start(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock)
    progress.step("generating")
    clock.now += 65
    progress.step("training")
    assert lines(stream) == ["[    0s] generating", "[ 1m05s] training"]


def test_plain_throttles_counts_to_one_line_per_interval(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock, interval=5.0)
    progress.step("embedding")
    for done in range(10, 100, 10):  # nine counts, one a second: a line at 5 s only
        clock.now += 1
        progress.count(done, 200)
    assert lines(stream) == ["[    0s] embedding", "[    5s]   50/200 (25%), 10/s, 15s left"]


def test_plain_measures_the_pace_from_the_first_count(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock, interval=5.0)
    progress.step("embedding")
    clock.now += 30  # loading a model, then the first text
    progress.count(1, 101)
    clock.now += 5
    progress.count(51, 101)
    clock.now += 5
    progress.count(101, 101)
    assert lines(stream)[1:] == [
        "[   30s]   1/101 (1%)",
        "[   35s]   51/101 (50%), 10/s, 5s left",
        "[   40s]   101/101 in 40s (10/s)",
    ]


def test_plain_always_writes_the_count_that_reaches_the_total_once(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock)
    progress.step("features")
    clock.now += 2
    progress.count(400, 400)
    progress.count(400, 400)  # repeated: nothing new
    assert lines(stream) == ["[    0s] features", "[    2s]   400/400 in 2s (200/s)"]


def test_plain_new_total_starts_a_new_run_timed_from_where_the_previous_ended(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock)
    progress.step("embedding profiles and deals")
    clock.now += 1
    progress.count(100, 100)  # profiles
    clock.now += 4
    progress.count(20, 1000)  # deals: a new run, its pace from here on
    clock.now += 1
    progress.count(30, 1000)
    clock.now += 97
    progress.count(1000, 1000)
    assert lines(stream)[1:] == [
        "[    1s]   100/100 in 1s (100/s)",
        "[    6s]   30/1,000 (3%), 10/s, 1m37s left",
        "[ 1m43s]   1,000/1,000 in 1m42s (10/s)",
    ]


def test_plain_counts_before_any_stage_and_zero_totals_are_safe(clock: FakeClock) -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, clock=clock)
    progress.count(0, 0)
    clock.now += 6
    progress.count(0, 5)
    assert lines(stream) == ["[    0s]   0/0 in 0s", "[    6s]   0/5 (0%)"]


def terminal_console(stream: io.StringIO) -> Console:
    return Console(file=stream, force_terminal=True, width=160, color_system=None)


def test_terminal_prints_each_finished_stage_and_shows_counts_live(clock: FakeClock) -> None:
    stream = io.StringIO()
    with TerminalProgress(terminal_console(stream), clock=clock) as progress:
        progress.step("embedding 3 texts")
        clock.now += 2
        progress.count(1, 3)
        live = progress._display.get_renderable()
        clock.now += 4
        progress.count(3, 3)
        progress.step("indexing history")
        clock.now += 65
    rendered = io.StringIO()
    terminal_console(rendered).print(live)
    assert "embedding 3 texts" in rendered.getvalue() and "1/3" in rendered.getvalue()
    finished = [line for line in stream.getvalue().splitlines() if "✓" in line]
    assert [line.split("✓ ")[1] for line in finished] == ["embedding 3 texts (6s)", "indexing history (1m05s)"]


def test_terminal_does_not_mark_a_failed_stage_finished() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), TerminalProgress(terminal_console(stream)) as progress:
        progress.step("training")
        raise RuntimeError("broken")
    assert "✓" not in stream.getvalue()


def test_show_progress_picks_the_renderer_for_the_console() -> None:
    with show_progress(terminal_console(io.StringIO())) as progress:
        assert isinstance(progress, TerminalProgress)
    with show_progress(Console(file=io.StringIO())) as progress:
        assert isinstance(progress, PlainProgress)
