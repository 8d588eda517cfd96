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

The client shares the machine with the server: on 2 cores its event loop takes CPU from the workers.
Requests carry the key that `running_service` creates for the benchmark (every scope, no practical
rate limit).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from features.progress import SILENT, Progress
from models.registry import Paths
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
from serving.service import load_router
from serving.stores import sqlite_url
from training.config import TrainConfig
from training.workflows import ensure_champion

REQUEST_TIMEOUT_SECONDS = 30.0
HEALTH_INTERVAL_SECONDS = 0.1
WARMUP_PER_TASK = 2
MEMORY_SAMPLE_SECONDS = 0.5  # smaps_rollup of every process: cheap, but not free on a busy machine
STATE_MARKER = "routing-state"  # in the path of every mapped state file (serving.service.load_router)


@dataclass(frozen=True)
class LoadSettings:
    """What `bench_load` sends: `concurrency` tasks for `seconds`, once per worker count in `workers`,
    cycling over `distinct_deals` unseen deals."""

    concurrency: int = 32
    seconds: float = 30.0
    workers: tuple[int, ...] = (1, 2)
    distinct_deals: int = 500


def mapping_workers(pid: int) -> int:
    """How many processes of the tree under `pid` have the routing state mapped (loaded)."""
    count = 0
    for process in psutil.Process(pid).children(recursive=True):
        try:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:  # exited, or not Linux
            continue
        count += STATE_MARKER in maps
    return count


def wait_for_workers(server: RunningServer, workers: int, timeout: float) -> None:
    """Block until `workers` processes have mapped the routing state. Raises RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    while mapping_workers(server.process.pid) < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(
                f"fewer than {workers} workers loaded the model in {timeout:.0f} s; see {server.log_path}"
            )
        time.sleep(0.5)


async def drive_load(
    url: str, headers: dict[str, str], bodies: list[dict[str, Any]], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for `seconds` (after a warm-up), polling /healthz beside;
    `headers` go with every request (the API key)."""
    # A new connection per request: kept-alive connections, opened together at warm-up, all land on
    # the worker that wakes first (its accept loop drains the queue; measured 33 connections to 0 with
    # 2 workers at 100k partners), so the other worker would sit idle for the whole run.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)
    deals = itertools.cycle(bodies)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    health_latencies: list[float] = []
    health_errors: Counter[str] = Counter()

    async with (
        httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as health_client,
    ):

        async def warm_up() -> None:
            for _ in range(WARMUP_PER_TASK):
                (await client.post("/route", json=next(deals))).raise_for_status()

        await asyncio.gather(*(warm_up() for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await client.post("/route", json=next(deals))
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors[f"http_{response.status_code}"] += 1

        async def health() -> None:
            while time.perf_counter() < deadline:
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

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)), health())
        wall = time.perf_counter() - started

    if not latencies or not health_latencies:
        raise RuntimeError(f"no request was answered: errors {dict(errors)}, /healthz errors {dict(health_errors)}")
    return {
        "requests_ok": len(latencies),
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
    }


def measure_workers(store: Paths, workers: int, bodies: list[dict[str, Any]], settings: LoadSettings) -> dict[str, Any]:
    """One server with `workers` workers under load: `drive_load`'s figures, startup and peak memory."""
    bench_dir = store.mlruns_dir.parent
    started = time.perf_counter()
    with running_service(
        store,
        sqlite_url(bench_dir / "decisions.sqlite"),
        bench_dir / f"server-{workers}w.log",
        READY_TIMEOUT_SECONDS,
        workers=workers,
    ) as server:
        wait_for_workers(server, workers, READY_TIMEOUT_SECONDS)
        startup = time.perf_counter() - started
        memory = PeakMemory(server.process.pid, MEMORY_SAMPLE_SECONDS)
        loaded = asyncio.run(drive_load(server.url, server.headers, bodies, settings.concurrency, settings.seconds))
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


def bench_load(
    config: TrainConfig, paths: Paths, settings: LoadSettings, progress: Progress = SILENT
) -> dict[str, Any]:
    """Run the load benchmark for `config.ecosystem`; JSON with one object per worker count, keyed
    `workers_<W>`, and the ratios of the largest worker count to the smallest."""
    with isolated_tracking():
        store = bench_paths(config, paths)
        progress.step(f"model for {config.ecosystem.partners:,} partners (store {store.mlruns_dir})")
        version = ensure_champion(config, store, progress)
        progress.step("the shared routing state (computed once, then mapped by every worker)")
        started = time.perf_counter()
        load_router(store, progress)
        state_seconds = time.perf_counter() - started
        deals = unseen_requests(settings.distinct_deals, seed=config.ecosystem.seed + 1)
        bodies = [deal.model_dump(mode="json") for deal in deals]
        load_average = os.getloadavg()[0]
        runs: dict[str, Any] = {}
        for workers in settings.workers:
            progress.step(
                f"{workers} worker(s): {settings.concurrency} concurrent clients for {settings.seconds:.0f} s"
            )
            runs[f"workers_{workers}"] = measure_workers(store, workers, bodies, settings)

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
