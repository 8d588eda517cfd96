"""`partnermatch bench load`: sustained load on the real service, for each worker count asked.

The model, the service and the unseen deals are `bench route`'s (its store under
`<cache>/bench-route/`). Before any server starts, the routing state is computed once in this process
and stored (`serving.routing.shared`), so every measured server maps the same files and no run pays
for, or keeps the heap of, building it. Then, per worker count W:

1. `bentoml serve` with W workers on a free loopback port; wait until every worker maps the state.
2. An asyncio httpx client runs `concurrency` tasks, each posting the next deal to `/route` as soon as
   its previous answer arrives, for `seconds`, each request on a new connection (so the workers'
   accept loops share them out); one more task polls `/healthz` every 100 ms. Warm-up
   requests first (two per task), not counted. Stops by itself: no request starts after the deadline
   and each one times out after `REQUEST_TIMEOUT_SECONDS`.
3. Measured: requests/s answered 200, errors (non-200 or transport) by kind, latency p50/p95/p99 of the
   answered requests (client clock, JSON both ways included), `/healthz` latency while loaded, and the
   peak memory of the whole server process tree (`PeakMemory`: RSS, PSS and USS summed; the
   ratios compare PSS, which counts a shared page once, not RSS, which counts it in every worker),
   and each process's figures at the peak.

With `promote_during` (`--promote-during`), a challenger win model is trained first in the benchmark's
store (the same ecosystem, another LightGBM seed) and registered; each worker count's server starts
with the baseline as `champion` and, `PROMOTE_AT_FRACTION` of the way into the measured load,
`champion` moves to the challenger. With 1 worker the client then calls `POST /admin/reload`; with
more, the admin call would reach one worker only, so the workers' own poll
(`PARTNERMATCH_RELOAD_SECONDS` = `reload_poll_seconds`) reloads each of them. Measured: failed requests
(must stay 0), when `champion` moved, when each worker mapped the challenger's routing state (it loads
that just before its swap), and the share of `/route` answers from each model version before and
after the move (the version is read from every answer).

The client shares the machine with the server: on 2 cores its event loop takes CPU from the workers.
Requests carry the key that `running_service` creates for the benchmark (every scope, no practical
rate limit).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from features.progress import SILENT, Progress
from models.registry import REGISTERED_WIN_MODEL, Paths, RegisteredVersion
from partnermatch.bench.route import (
    READY_TIMEOUT_SECONDS,
    PeakMemory,
    RunningServer,
    bench_paths,
    isolated_tracking,
    latency_summary,
    running_service,
    unseen_requests,
)
from serving.idempotency import REPLAYED_HEADER
from serving.reload import RELOAD_SECONDS_ENV
from serving.service import ROUTING_STATE_DIR, load_router, load_router_of, state_name
from serving.stores import sqlite_url
from training import tracking
from training.config import TrainConfig
from training.stages import current_champion
from training.workflows import ensure_champion, train_from_options

REQUEST_TIMEOUT_SECONDS = 30.0
HEALTH_INTERVAL_SECONDS = 0.1
WARMUP_PER_TASK = 2
MEMORY_SAMPLE_SECONDS = 0.5  # smaps_rollup of every process: cheap, but not free on a busy machine
PROMOTE_AT_FRACTION = 1 / 3  # of the measured load: the rest leaves time to reload and answers after it
SWITCH_POLL_SECONDS = 0.1  # how often the workers' mapped files are read while waiting for the switch
SWITCH_TIMEOUT_SECONDS = 300.0  # after the promotion: a worker that has not switched by then has failed to


@dataclass(frozen=True)
class LoadSettings:
    """What `bench_load` sends: `concurrency` tasks for `seconds`, once per worker count in `workers`,
    cycling over `distinct_deals` unseen deals (each sent with a new deal_id: `fresh_deals`)."""

    concurrency: int = 32
    seconds: float = 30.0
    workers: tuple[int, ...] = (1, 2)
    distinct_deals: int = 500
    promote_during: bool = False  # move `champion` to a freshly trained challenger during each run
    reload_poll_seconds: float = 1.0  # the workers' alias poll when promoting with more than one worker


@dataclass(frozen=True)
class Promotion:
    """Move `champion` of `store` from `baseline` to `challenger` `at_seconds` into the measured load of
    the server whose process is `server_pid`; `via_admin`: then call `POST /admin/reload` (else the
    workers' poll reloads)."""

    store: Paths
    baseline: RegisteredVersion
    challenger: RegisteredVersion
    at_seconds: float
    via_admin: bool
    server_pid: int


def processes_mapping(pid: int, marker: str) -> set[int]:
    """The processes of the tree under `pid` that have a file whose path contains `marker` mapped."""
    mapping = set()
    for process in psutil.Process(pid).children(recursive=True):
        try:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:  # exited, or not Linux
            continue
        if marker in maps:
            mapping.add(process.pid)
    return mapping


def mapping_workers(pid: int) -> int:
    """How many processes of the tree under `pid` have a routing state mapped (loaded)."""
    return len(processes_mapping(pid, ROUTING_STATE_DIR))


def wait_for_workers(server: RunningServer, workers: int, timeout: float) -> None:
    """Block until `workers` processes have mapped the routing state. Raises RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    while mapping_workers(server.process.pid) < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(
                f"fewer than {workers} workers loaded the model in {timeout:.0f} s; see {server.log_path}"
            )
        time.sleep(0.5)


def fresh_deals(bodies: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`bodies` over and over, each time with a new `deal_id` (the original with a counter appended): the
    service answers a repeated deal by replaying its logged decision (`serving.idempotency`), which
    would measure the replay, not the routing (nor, across a promotion, the version now serving)."""
    for sent, body in enumerate(itertools.cycle(bodies)):
        yield body | {"deal": body["deal"] | {"deal_id": f"{body['deal']['deal_id']}-{sent}"}}


async def drive_load(
    url: str,
    headers: dict[str, str],
    bodies: list[dict[str, Any]],
    concurrency: int,
    seconds: float,
    promotion: Promotion | None = None,
) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for `seconds` (after a warm-up), polling /healthz beside;
    `headers` go with every request (the API key). With a `promotion`, it happens meanwhile and the
    figures get a `promotion` object (`promote_under_load`)."""
    # A new connection per request: kept-alive connections, opened together at warm-up, all land on
    # the worker that wakes first (its accept loop drains the queue; measured 33 connections to 0 with
    # 2 workers at 100k partners), so the other worker would sit idle for the whole run.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)
    deals = fresh_deals(bodies)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    health_latencies: list[float] = []
    health_errors: Counter[str] = Counter()
    replayed = 0  # answers replayed from the decision log: 0 unless a deal_id repeats
    answered_by: list[tuple[float, str]] = []  # with a promotion: (seconds into the load, model version)

    async with (
        httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as health_client,
    ):

        async def warm_up() -> None:
            for _ in range(WARMUP_PER_TASK):
                (await client.post("/route", json=next(deals))).raise_for_status()

        await asyncio.gather(*(warm_up() for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds
        # With a promotion, the load goes on until it is over (`promote_then_extend`).
        load_end = deadline if promotion is None else math.inf

        async def user() -> None:
            nonlocal replayed
            while time.perf_counter() < load_end:
                sent = time.perf_counter()
                try:
                    response = await client.post("/route", json=next(deals))
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                    replayed += REPLAYED_HEADER in response.headers
                    if promotion is not None:  # parsed only then: the client's CPU is the server's too
                        answered_by.append((time.perf_counter() - started, response.json()["model"]["version"]))
                else:
                    errors[f"http_{response.status_code}"] += 1

        async def health() -> None:
            while time.perf_counter() < load_end:
                sent = time.perf_counter()
                try:
                    response = await health_client.get("/healthz")
                except httpx.HTTPError as error:
                    health_errors[type(error).__name__] += 1
                else:
                    if response.status_code == 200:
                        health_latencies.append(time.perf_counter() - sent)
                    else:
                        health_errors[f"http_{response.status_code}"] += 1
                await asyncio.sleep(HEALTH_INTERVAL_SECONDS)

        async def promote_then_extend(promotion: Promotion) -> dict[str, Any]:
            """The promotion, then as long a load after the last worker's switch as before the move."""
            nonlocal load_end
            try:
                return await promote_under_load(client, promotion, started)
            finally:
                load_end = max(deadline, time.perf_counter() + promotion.at_seconds)

        started = time.perf_counter()
        loads = [*(user() for _ in range(concurrency)), health()]
        promoted: dict[str, Any] = {}
        if promotion is None:
            await asyncio.gather(*loads)
        else:
            promoting = asyncio.create_task(promote_then_extend(promotion))
            await asyncio.gather(*loads)
            moved = await promoting
            promoted = {"promotion": moved | version_shares(answered_by, promotion, moved["promoted_at_s"])}
        wall = time.perf_counter() - started

    if not latencies or not health_latencies:
        raise RuntimeError(f"no request was answered: errors {dict(errors)}, /healthz errors {dict(health_errors)}")
    return {
        "requests_ok": len(latencies),
        "replayed": replayed,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "throughput_rps": len(latencies) / wall,
        "wall_s": wall,
        "latency": latency_summary(latencies),
        "healthz": {
            **latency_summary(health_latencies),
            "polls": len(health_latencies),
            "errors": sum(health_errors.values()),
        },
        **promoted,
    }


def move_champion(store: Paths, version: RegisteredVersion, reason: str) -> None:
    """Point `champion` at `version` (recorded in the alias history with `reason`)."""
    tracking.configure(store)
    tracking.mark_version(store, REGISTERED_WIN_MODEL, version.version, True, reason, {})


async def admin_reload(client: httpx.AsyncClient, started: float) -> dict[str, Any]:
    """`POST /admin/reload`: its status, when it answered (seconds after `started`, perf_counter), whether
    it reloaded anything and the win model version it serves now."""
    response = await client.post("/admin/reload")
    answer = response.json()
    return {
        "status": response.status_code,
        "answered_at_s": time.perf_counter() - started,
        "reloaded": answer.get("reloaded"),
        "model_version": answer.get("model", {}).get("version"),
    }


async def promote_under_load(client: httpx.AsyncClient, promotion: Promotion, started: float) -> dict[str, Any]:
    """At `promotion.at_seconds` after `started` (perf_counter), move `champion` to the challenger and,
    if `via_admin`, call `POST /admin/reload`; meanwhile watch until every worker has mapped the
    challenger's routing state (or `SWITCH_TIMEOUT_SECONDS` pass). Times are seconds after `started`;
    `workers_switched_at_s` has one entry (pid: time) per worker that switched: when it had mapped the
    state, a lower bound of its swap (it loads the other models after)."""
    await asyncio.sleep(promotion.at_seconds)
    workers = processes_mapping(promotion.server_pid, ROUTING_STATE_DIR)
    marker = state_name(promotion.challenger)
    # Else the first worker to reload builds it, under the load (later runs of the benchmark map it).
    state_prebuilt = any((promotion.store.cache_dir / ROUTING_STATE_DIR).glob(f"{marker}-*"))
    reason = f"bench load --promote-during: v{promotion.challenger.version} promoted under load"
    await asyncio.to_thread(move_champion, promotion.store, promotion.challenger, reason)
    promoted_at = time.perf_counter() - started
    reloading = asyncio.create_task(admin_reload(client, started)) if promotion.via_admin else None
    switched: dict[int, float] = {}
    give_up = time.perf_counter() + SWITCH_TIMEOUT_SECONDS
    while len(switched) < len(workers) and time.perf_counter() < give_up:
        for pid in processes_mapping(promotion.server_pid, marker) - switched.keys():
            switched[pid] = time.perf_counter() - started
        await asyncio.sleep(SWITCH_POLL_SECONDS)
    return {
        "baseline_version": promotion.baseline.version,
        "challenger_version": promotion.challenger.version,
        "via": "POST /admin/reload" if promotion.via_admin else "poll",
        "promoted_at_s": promoted_at,
        "challenger_state_prebuilt": state_prebuilt,
        "admin_reload": None if reloading is None else await reloading,
        "workers": len(workers),
        "workers_switched_at_s": {str(pid): at for pid, at in sorted(switched.items(), key=lambda item: item[1])},
        "all_workers_switched": len(switched) == len(workers),
    }


def version_shares(answered_by: list[tuple[float, str]], promotion: Promotion, promoted_at: float) -> dict[str, Any]:
    """The share of answers (in [0, 1]) from each model version before and after `promoted_at` (seconds
    into the load, like the answers' times), and when the challenger first and the baseline last answered
    relative to it (None when it never did)."""

    def shares(versions: list[str]) -> dict[str, float]:
        return {version: count / len(versions) for version, count in sorted(Counter(versions).items())}

    def relative(times: list[float], pick: Callable[[list[float]], float]) -> float | None:
        return pick(times) - promoted_at if times else None

    before = [version for at, version in answered_by if at < promoted_at]
    after = [version for at, version in answered_by if at >= promoted_at]
    return {
        "answers_before": len(before),
        "answers_after": len(after),
        "shares_before": shares(before),
        "shares_after": shares(after),
        "challenger_first_after_s": relative(
            [at for at, version in answered_by if version == promotion.challenger.version], min
        ),
        "baseline_last_after_s": relative(
            [at for at, version in answered_by if version == promotion.baseline.version], max
        ),
    }


def measure_workers(
    store: Paths,
    workers: int,
    bodies: list[dict[str, Any]],
    settings: LoadSettings,
    versions: tuple[RegisteredVersion, RegisteredVersion] | None = None,
) -> dict[str, Any]:
    """One server with `workers` workers under load: `drive_load`'s figures, startup and peak memory.
    With `versions` (baseline, challenger), the server starts with the baseline as `champion` and the
    challenger is promoted during the load (see the module docstring)."""
    bench_dir = store.mlruns_dir.parent
    via_admin = workers == 1  # the admin call reaches one worker; more rely on each one's poll
    environment = {RELOAD_SECONDS_ENV: "0" if versions is None or via_admin else str(settings.reload_poll_seconds)}
    if versions is not None:
        move_champion(store, versions[0], "bench load --promote-during: the baseline serves when the load starts")
    started = time.perf_counter()
    with running_service(
        store,
        sqlite_url(bench_dir / "decisions.sqlite"),
        bench_dir / f"server-{workers}w.log",
        READY_TIMEOUT_SECONDS,
        workers=workers,
        environment=environment,
    ) as server:
        wait_for_workers(server, workers, READY_TIMEOUT_SECONDS)
        startup = time.perf_counter() - started
        promotion = None
        if versions is not None:
            at_seconds = PROMOTE_AT_FRACTION * settings.seconds
            promotion = Promotion(store, *versions, at_seconds, via_admin, server.process.pid)
        memory = PeakMemory(server.process.pid, MEMORY_SAMPLE_SECONDS)
        loaded = asyncio.run(
            drive_load(server.url, server.headers, bodies, settings.concurrency, settings.seconds, promotion)
        )
        peaks = memory.stop()
    return {
        "workers": workers,
        **loaded,
        "startup_s": startup,
        "peak_rss_mb": peaks.rss_mb,
        "peak_pss_mb": peaks.pss_mb,
        "peak_uss_mb": peaks.uss_mb,
        # Per process at the peak of the summed PSS: a worker's USS is what it does not share.
        "processes_at_peak_pss": [asdict(process) for process in memory.at_peak_pss],
    }


def train_challenger(
    config: TrainConfig, store: Paths, progress: Progress = SILENT
) -> tuple[RegisteredVersion, RegisteredVersion]:
    """(baseline, challenger): the current champion and a new version trained on the same ecosystem with
    another LightGBM seed (the training flow may or may not promote it; the benchmark moves the alias)."""
    baseline = current_champion(store)
    if baseline is None:
        raise ValueError(f"no champion in {store.mlruns_dir} to promote a challenger over")
    progress.step(f"training a challenger to promote over v{baseline.version} during the load")
    challenger_config = replace(config, model=replace(config.model, seed=config.model.seed + 1))
    return baseline, train_from_options(challenger_config, store, None, progress).version


def bench_load(
    config: TrainConfig, paths: Paths, settings: LoadSettings, progress: Progress = SILENT
) -> dict[str, Any]:
    """Run the load benchmark for `config.ecosystem`; JSON with one object per worker count, keyed
    `workers_<W>`, and the ratios of the largest worker count to the smallest."""
    with isolated_tracking():
        store = bench_paths(config, paths)
        progress.step(f"model for {config.ecosystem.partners:,} partners (store {store.mlruns_dir})")
        version = ensure_champion(config, store, progress)
        versions = train_challenger(config, store, progress) if settings.promote_during else None
        progress.step("the shared routing state (computed once, then mapped by every worker)")
        started = time.perf_counter()
        # Of the version the servers start with: with a promotion, each run's workers build or map the
        # challenger's state under load.
        load_router_of(store, versions[0], progress) if versions is not None else load_router(store, progress)
        state_seconds = time.perf_counter() - started
        deals = unseen_requests(settings.distinct_deals, seed=config.ecosystem.seed + 1)
        bodies = [deal.model_dump(mode="json") for deal in deals]
        load_average = os.getloadavg()[0]
        runs: dict[str, Any] = {}
        for workers in settings.workers:
            progress.step(
                f"{workers} worker(s): {settings.concurrency} concurrent clients for {settings.seconds:.0f} s"
            )
            runs[f"workers_{workers}"] = measure_workers(store, workers, bodies, settings, versions)

    fewest, most = runs[f"workers_{min(settings.workers)}"], runs[f"workers_{max(settings.workers)}"]
    return {
        **runs,
        "ratios": {
            "workers": [fewest["workers"], most["workers"]],
            "rss": most["peak_rss_mb"] / fewest["peak_rss_mb"],
            "pss": most["peak_pss_mb"] / fewest["peak_pss_mb"],
            "throughput": most["throughput_rps"] / fewest["throughput_rps"],
        },
        "errors": sum(run["errors"] + run["healthz"]["errors"] for run in runs.values()),
        "settings": asdict(settings),
        "state_load_s": state_seconds,
        "partners": config.ecosystem.partners,
        "deals": config.ecosystem.deals,
        "model": {"version": version, "encoder": config.encoder},
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_average,
    }
