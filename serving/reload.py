"""Hot reload of the champion: a new `partnermatch-win@champion` is loaded off the request path and
swapped in with one reference assignment, so no request in flight is dropped or fails.

`ServedChampion` holds the current `LoadedChampion` (the Router and the registered version it serves).
A request reads `current` once and routes with that Router to the end, even if a reload swaps the
reference meanwhile (the old Router lives until its last request drops it). `reload()` checks the
alias (`version_by_alias`) and, when it names another version, builds the new Router
(`serving.service.load_router_of`: bundle download, routing state) before the swap; reloads are
serialised by a lock. `poll_every(seconds)` runs `reload()` on a daemon thread; a failed reload is
logged and the current model keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from models.drift import read_reference
from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, RegisteredVersion, local_bundle, version_by_alias
from serving.routing import Router
from serving.schemas import TrainingWindow

logger = logging.getLogger(__name__)

RELOAD_SECONDS_ENV = "PARTNERMATCH_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 30.0  # how often a service checks the champion alias; 0 turns polling off


def reload_seconds() -> float:
    """`$PARTNERMATCH_RELOAD_SECONDS` (>= 0), else 30. Raises ValueError for a negative or non-number."""
    raw = os.environ.get(RELOAD_SECONDS_ENV)
    seconds = DEFAULT_RELOAD_SECONDS if raw is None or raw == "" else float(raw)
    if seconds < 0:
        raise ValueError(f"{RELOAD_SECONDS_ENV} must be >= 0 seconds, got {raw!r}")
    return seconds


@dataclass(frozen=True)
class LoadedChampion:
    router: Router
    version: RegisteredVersion  # as loaded (its tags may have changed since: read them afresh)
    training_window: TrainingWindow | None  # from the bundle's drift reference; None without one


@dataclass(frozen=True)
class ReloadOutcome:
    current: LoadedChampion
    previous_version: str
    reloaded: bool


RouterLoader = Callable[[Paths, RegisteredVersion], Router]


def load_champion(paths: Paths, version: RegisteredVersion, load_router_of: RouterLoader) -> LoadedChampion:
    """`version` loaded: its Router (`load_router_of`) and its training window."""
    router = load_router_of(paths, version)
    reference = read_reference(local_bundle(paths, version))
    window = (
        None
        if reference is None
        else TrainingWindow(start=reference.window_start, end=reference.window_end, rows=reference.rows)
    )
    return LoadedChampion(router=router, version=version, training_window=window)


class ServedChampion:
    """The champion a service routes with, swapped atomically by `reload`. Raises ValueError at
    construction when no champion is registered."""

    def __init__(self, paths: Paths, load_router_of: RouterLoader) -> None:
        self.paths = paths
        self._load_router_of = load_router_of
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._current = load_champion(paths, self._champion(), load_router_of)

    def _champion(self) -> RegisteredVersion:
        champion = version_by_alias(self.paths, REGISTERED_WIN_MODEL, CHAMPION)
        if champion is None:
            raise ValueError(f"no {REGISTERED_WIN_MODEL}@{CHAMPION} is registered in {self.paths.tracking_uri}")
        return champion

    @property
    def current(self) -> LoadedChampion:
        """The model to route one request with: read once per request."""
        return self._current

    def reload(self) -> ReloadOutcome:
        """Load the version `champion` names now if it is not the one served, then swap it in.
        Raises RegistryError / ValueError (nothing swapped) when the registry or the bundle fails."""
        with self._reload_lock:
            before = self._current
            champion = self._champion()
            if (champion.version, champion.run_id) == (before.version.version, before.version.run_id):
                return ReloadOutcome(before, before.version.version, reloaded=False)
            loaded = load_champion(self.paths, champion, self._load_router_of)
            self._current = loaded  # one reference assignment: requests see the old or the new model
            logger.info("reloaded %s: v%s -> v%s", REGISTERED_WIN_MODEL, before.version.version, champion.version)
            return ReloadOutcome(loaded, before.version.version, reloaded=True)

    def poll_every(self, seconds: float) -> threading.Thread | None:
        """Call `reload()` every `seconds` on a daemon thread until `stop()`; None (no thread) for 0."""
        if seconds <= 0:
            return None

        def poll() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.reload()
                except Exception:  # the current model keeps serving; the next poll tries again
                    logger.exception("reloading the champion failed; still serving v%s", self.current.version.version)

        thread = threading.Thread(target=poll, name="champion-reload", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop polling (the thread ends within one interval's wait)."""
        self._stop.set()
