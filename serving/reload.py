"""Hot reload: models a service loaded are swapped for the versions their registry aliases name now,
off the request path and with one reference assignment, so no request in flight is dropped or fails.

`HotSwap[S]` holds the current value of `S` (for the service: `serving.service.ServedModels`, every
model a request may use). A request reads `current` once and uses that value to the end, even if a
reload swaps the reference meanwhile (the old models live until their last request drops them).
`reload()` calls the loader with the current value; the loader keeps what did not change
(`refreshed`) and loads the rest before the swap. Reloads are serialised by a lock; a loader that
raises swaps nothing. `poll_every(seconds)` reloads on a daemon thread; a failed reload is logged
and the current models keep serving.

`Loaded[T]`: one registered version loaded (the served object `T`, the version and alias it was
loaded by, its encoder and its training window from the bundle's drift reference).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from models.drift import read_reference
from models.registry import Paths, RegisteredVersion, local_bundle
from serving.schemas import TrainingWindow

logger = logging.getLogger(__name__)

RELOAD_SECONDS_ENV = "PARTNERMATCH_RELOAD_SECONDS"
T = TypeVar("T")
S = TypeVar("S")
DEFAULT_RELOAD_SECONDS = 30.0  # how often a service checks its models' aliases; 0 turns polling off


def reload_seconds() -> float:
    """`$PARTNERMATCH_RELOAD_SECONDS` (>= 0), else 30. Raises ValueError for a negative or non-number."""
    raw = os.environ.get(RELOAD_SECONDS_ENV)
    seconds = DEFAULT_RELOAD_SECONDS if raw is None or raw == "" else float(raw)
    if seconds < 0:
        raise ValueError(f"{RELOAD_SECONDS_ENV} must be >= 0 seconds, got {raw!r}")
    return seconds


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """`model`, built from registered `version` (found by `alias`)."""

    model: T
    version: RegisteredVersion  # as loaded (its tags may have changed since: read them afresh)
    alias: str
    encoder: str | None  # the `features.embed` encoder it embeds text with; None when it embeds none
    training_window: TrainingWindow | None  # from the bundle's drift reference; None without one


def training_window(paths: Paths, version: RegisteredVersion) -> TrainingWindow | None:
    """The training window of a version's bundle (`models.drift` reference); None when it has none."""
    reference = read_reference(local_bundle(paths, version))
    if reference is None:
        return None
    return TrainingWindow(start=reference.window_start, end=reference.window_end, rows=reference.rows)


def loaded(paths: Paths, version: RegisteredVersion, alias: str, model: T, encoder: str | None) -> Loaded[T]:
    """`model` of `version` with its training window read from the bundle."""
    return Loaded(model, version, alias, encoder, training_window(paths, version))


def same_version(one: RegisteredVersion, other: RegisteredVersion) -> bool:
    """The same registered version (name, number and the run that produced it)."""
    return (one.name, one.version, one.run_id) == (other.name, other.version, other.run_id)


def refreshed(
    previous: Loaded[T] | None, version: RegisteredVersion | None, load: Callable[[RegisteredVersion], Loaded[T]]
) -> Loaded[T] | None:
    """What to serve for an alias that now names `version`: None when it names none, `previous`
    when it already is that version, else `load(version)`."""
    if version is None:
        return None
    if previous is not None and same_version(previous.version, version):
        return previous
    return load(version)


class HotSwap(Generic[S]):
    """The value a service serves with, replaced atomically by `reload` (see the module docstring).
    `load(previous)` builds the value (previous: None the first time); its errors propagate."""

    def __init__(self, load: Callable[[S | None], S]) -> None:
        self._load = load
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._current = load(None)

    @property
    def current(self) -> S:
        """The value to serve one request with: read it once per request."""
        return self._current

    def swap(self, value: S) -> S:
        """Serve `value` from now on; returns the value it replaces."""
        with self._reload_lock:
            before, self._current = self._current, value
            return before

    def reload(self) -> tuple[S, S]:
        """Build the value anew from the current one and swap it in: (before, after). Raises what the
        loader raises (nothing swapped)."""
        with self._reload_lock:
            before = self._current
            after = self._load(before)
            self._current = after  # one reference assignment: a request sees the old or the new value
            return before, after

    def poll_every(self, seconds: float) -> threading.Thread | None:
        """Call `reload()` every `seconds` on a daemon thread until `stop()`; None (no thread) for 0."""
        if seconds <= 0:
            return None

        def poll() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.reload()
                except Exception:  # the current models keep serving; the next poll tries again
                    logger.exception("reloading the served models failed; the current ones keep serving")

        thread = threading.Thread(target=poll, name="model-reload", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop polling (the thread ends within one interval's wait)."""
        self._stop.set()
