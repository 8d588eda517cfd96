"""`partnermatch bench route`: the real routing service over HTTP beside exact brute force, same deals.

1. The benchmark ecosystem (cached like the demo one) and a model trained on it, registered in an
   MLflow store of its own under `<cache>/bench-route/<ecosystem>-<encoder>-<model config>/`, so the
   user's champion is never touched; a second run reuses both.
2. `bentoml serve` in a subprocess on a free loopback port. The requests are unseen deals (from an
   ecosystem with another seed, deal registrations removed so that ranks are on merit), sent one at a
   time from one client after a warm-up. Latency is the client's clock around each call (JSON both
   ways and the deal's embedding included); peak RSS sums the server's whole process tree (psutil).
3. Brute force on the same deals, in this process (no HTTP: the comparison favours brute force):
   - `brute_force`: every partner in the catalogue through the model (`Router.score_every_partner`),
     then the constraints; `speedup_vs_brute_force` = its mean latency / the service's.
   - `eligible_scan`: the constraints first, then every partner meeting them through the model and
     the top 10 explained (`Router.route(request, exhaustive=True)`): the strongest exact baseline;
     `speedup_vs_eligible_scan` = its mean latency / the service's.
   Both give the exact top 10 (checked: `brute_force_agrees`); recall at 10 = share of the exact top
   10 found in the service's top 10.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from features import schema
from features.progress import SILENT, Progress
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import Paths
from models.win import WinModel
from serving.keys import KeyStore, Scope
from serving.ratelimit import RateLimit
from serving.routing import Router, merit_order
from serving.schemas import RouteRequest
from serving.service import (
    DATABASE_URL_ENV,
    FEEDBACK_STORE_ENV,
    SERVE_ENVIRONMENT,
    load_router,
    serve_command,
    workers_environment,
)
from serving.stores import sqlite_url, upgrade_database
from training.config import TrainConfig
from training.workflows import ensure_champion

BENCH_DIR = "bench-route"
WARMUP_REQUESTS = 20
MAX_RESULTS = 10
READY_TIMEOUT_SECONDS = 1800.0  # loading a 100k-partner bundle and its shortlists takes minutes on 2 cores
RSS_SAMPLE_SECONDS = 0.1
READY_REPORT_SECONDS = 15.0  # how often the wait for /readyz says how long it has waited
BENCH_RATE_LIMIT = RateLimit(per_second=1e6, burst=1_000_000)  # measure the service, not its rate limiter


def bench_paths(config: TrainConfig, paths: Paths) -> Paths:
    """An MLflow store of the benchmark's own, keyed by ecosystem, encoder and model config; the
    embedding cache and ONNX export stay shared."""
    digest = hashlib.sha1(json.dumps(asdict(config.model), sort_keys=True).encode()).hexdigest()[:8]
    name = f"{config.ecosystem.cache_key}-{config.encoder}-{digest}"
    return Paths(mlruns_dir=paths.cache_dir / BENCH_DIR / name / "mlruns", cache_dir=paths.cache_dir)


@contextmanager
def isolated_tracking() -> Iterator[None]:
    """MLFLOW_TRACKING_URI would point every store at one database: unset it for the benchmark."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def unseen_requests(count: int, seed: int) -> list[RouteRequest]:
    """`count` deals the model has never seen, as routing requests for the top `MAX_RESULTS`."""
    ecosystem, _ = generate_ecosystem(EcosystemConfig(partners=500, deals=count, seed=seed))
    return [
        RouteRequest.model_validate(
            {
                "deal": {
                    "deal_id": str(row[schema.DEAL_ID]),
                    "requirement_text": str(row[schema.REQUIREMENT_TEXT]),
                    "products": list(schema.split_list(row[schema.DEAL_PRODUCTS])),
                    "region": str(row[schema.DEAL_REGION]),
                    "amount": float(row[schema.AMOUNT]),
                    "segment": str(row[schema.SEGMENT]),
                },
                "options": {"max_results": MAX_RESULTS},
            }
        )
        for _, row in ecosystem.deals.head(count).iterrows()
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class MemoryPeaks:
    """Peaks of a process tree's summed memory, MiB. `rss_mb` counts a page shared by k processes k
    times (mapped files, libraries); `pss_mb` counts it once (1/k per process): the tree's footprint;
    `uss_mb` counts only private pages."""

    rss_mb: float
    pss_mb: float
    uss_mb: float


@dataclass(frozen=True)
class ProcessMemory:
    """One process of the tree, MiB (as `MemoryPeaks`): what it does not share is its `uss_mb`."""

    pid: int
    command: str  # its command line, shortened
    rss_mb: float
    pss_mb: float
    uss_mb: float


COMMAND_CHARS = 120


class PeakMemory:
    """Samples the summed RSS, PSS and USS of a process and all its descendants in a background
    thread; `at_peak_pss` keeps each process's figures at the sample with the highest summed PSS."""

    def __init__(self, pid: int, sample_seconds: float = RSS_SAMPLE_SECONDS) -> None:
        self.process = psutil.Process(pid)
        self.sample_seconds = sample_seconds
        self.peaks = MemoryPeaks(0.0, 0.0, 0.0)
        self.at_peak_pss: tuple[ProcessMemory, ...] = ()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def per_process(self) -> tuple[ProcessMemory, ...]:
        sampled = []
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                memory = process.memory_full_info()  # Linux: /proc/<pid>/smaps_rollup
                command = " ".join(process.cmdline())[-COMMAND_CHARS:]
            except psutil.NoSuchProcess:
                continue
            sizes = (memory.rss / 2**20, memory.pss / 2**20, memory.uss / 2**20)
            sampled.append(ProcessMemory(process.pid, command, *sizes))
        return tuple(sampled)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = self.per_process()
            except psutil.NoSuchProcess:
                return
            now = _summed(processes)
            if now.pss_mb > self.peaks.pss_mb:
                self.at_peak_pss = processes
            self.peaks = MemoryPeaks(*(max(a, b) for a, b in zip(astuple(self.peaks), astuple(now), strict=True)))
            self._stop.wait(self.sample_seconds)

    def stop(self) -> MemoryPeaks:
        self._stop.set()
        self._thread.join()
        return self.peaks


def _summed(processes: tuple[ProcessMemory, ...]) -> MemoryPeaks:
    return MemoryPeaks(
        sum(process.rss_mb for process in processes),
        sum(process.pss_mb for process in processes),
        sum(process.uss_mb for process in processes),
    )


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    api_key: str  # a token with every scope and no practical rate limit

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@contextmanager
def running_service(
    paths: Paths,
    database_url: str,
    log_path: Path,
    timeout: float,
    workers: int = 1,
    progress: Progress = SILENT,
    environment: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """`bentoml serve` with `workers` processes on a free loopback port with `paths` as its model store
    and `database_url` as its database (an API key created there for the caller); yields once /readyz answers 200 and
    stops the whole process group on exit. Raises RuntimeError if it dies or times out. While it
    waits, `progress` gets a step every `READY_REPORT_SECONDS` with the time waited. `environment`
    adds to (or overrides) the server's environment, e.g. `PARTNERMATCH_RELOAD_SECONDS`."""
    port = _free_port()
    inherited = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    # Absolute: the server runs in the project directory, not necessarily the caller's.
    stores = {
        "PARTNERMATCH_MLRUNS": str(paths.mlruns_dir.resolve()),
        "PARTNERMATCH_CACHE": str(paths.cache_dir.resolve()),
        DATABASE_URL_ENV: database_url,
        # Not the caller's feedback file of the pre-database layout: its events would be imported into
        # this database and move the live features away from the brute-force reference.
        FEEDBACK_STORE_ENV: str(paths.mlruns_dir.resolve().parent / "feedback.sqlite"),
    }
    upgrade_database(database_url)
    keys = KeyStore(database_url)
    try:
        token = keys.create("bench", set(Scope), BENCH_RATE_LIMIT).token
    finally:
        keys.close()
    server_environment = SERVE_ENVIRONMENT | inherited | stores | workers_environment(workers) | dict(environment or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # Own session: the server's workers form one process group that we stop by its id.
        process = subprocess.Popen(
            serve_command("127.0.0.1", port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment,
            start_new_session=True,
        )
    server = RunningServer(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path, api_key=token)
    try:
        progress.step(f"starting the service on {server.url}, waiting for /readyz (server log: {log_path})")
        _wait_ready(server, timeout, progress)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: RunningServer, timeout: float, progress: Progress) -> None:
    started = time.monotonic()
    next_report = started + READY_REPORT_SECONDS
    while (now := time.monotonic()) < started + timeout:
        if now >= next_report:
            progress.step(f"service not ready after {now - started:.0f} s (gives up after {timeout:.0f} s)")
            next_report += READY_REPORT_SECONDS
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the service exited with code {server.process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the service was not ready after {timeout:.0f} s; see {server.log_path}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    milliseconds = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p95_ms": float(np.percentile(milliseconds, 95)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "mean_ms": float(milliseconds.mean()),
        "max_ms": float(milliseconds.max()),
    }


def measure_service(
    server: RunningServer, warmup: list[RouteRequest], requests: list[RouteRequest], progress: Progress = SILENT
) -> dict[str, Any]:
    """Send the requests one at a time; latencies, throughput, peak RSS and each response's top ids.
    `progress` counts the measured requests answered."""
    memory = PeakMemory(server.process.pid)
    latencies: list[float] = []
    top_ids: list[list[str]] = []
    scored: list[int] = []
    with httpx.Client(base_url=server.url, timeout=60.0, headers=server.headers) as client:
        for request in warmup:
            client.post("/route", json=request.model_dump(mode="json")).raise_for_status()
        started = time.perf_counter()
        for request in requests:
            body = request.model_dump(mode="json")
            sent = time.perf_counter()
            response = client.post("/route", json=body)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200:
                raise RuntimeError(f"deal {request.deal.deal_id}: HTTP {response.status_code} {response.text[:500]}")
            answer = response.json()
            top_ids.append([partner["partner_id"] for partner in answer["partners"]])
            scored.append(answer["candidates"]["scored"])
            progress.count(len(latencies), len(requests))
        wall = time.perf_counter() - started
    return {
        **latency_summary(latencies),
        "throughput_rps": len(requests) / wall,
        "server_rss_mb": memory.stop().rss_mb,
        "candidates_scored_mean": float(np.mean(scored)),
        "top_ids": top_ids,
    }


def _top_ids(partner_ids: np.ndarray, probabilities: np.ndarray, eligible: np.ndarray, count: int) -> list[str]:
    """Ids of the `count` eligible partners first in routing's order."""
    rows = np.flatnonzero(eligible)
    order = merit_order(partner_ids[rows], probabilities[rows])[:count]
    return [str(partner_id) for partner_id in partner_ids[rows[order]]]


def measure_exact(
    router: Router, requests: list[RouteRequest], service_top: list[list[str]], progress: Progress = SILENT
) -> dict[str, Any]:
    """Both exact references on every request: latencies, the service's recall of the exact top 10,
    and whether the two references agree on it. `progress` counts the requests done."""
    brute_latencies: list[float] = []
    scan_latencies: list[float] = []
    recalls: list[float] = []
    eligible: list[int] = []
    agrees = True
    for request, fast_ids in zip(requests, service_top, strict=True):
        started = time.perf_counter()
        probabilities, eligible_mask = router.score_every_partner(request)
        brute_top = _top_ids(router.context.partner_ids, probabilities, eligible_mask, request.options.max_results)
        brute_latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        scan = router.route(request, exhaustive=True)
        scan_latencies.append(time.perf_counter() - started)
        scan_top = [partner.partner_id for partner in scan.partners]
        agrees &= scan_top == brute_top
        recalls.append(len(set(scan_top) & set(fast_ids)) / len(scan_top))
        eligible.append(scan.candidates.eligible_partners)
        progress.count(len(recalls), len(requests))
    return {
        "brute_force": {**latency_summary(brute_latencies), "partners_scored": len(router.context.partner_ids)},
        "eligible_scan": {**latency_summary(scan_latencies), "eligible_partners_mean": float(np.mean(eligible))},
        "recall_at_10": float(np.mean(recalls)),
        "brute_force_agrees": bool(agrees),
    }


def bench_route(config: TrainConfig, paths: Paths, requests: int, progress: Progress = SILENT) -> dict[str, Any]:
    """Run the benchmark for `config.ecosystem`; JSON with one object per system plus headline keys."""
    with isolated_tracking():
        store = bench_paths(config, paths)
        progress.step(f"model for {config.ecosystem.partners:,} partners (store {store.mlruns_dir})")
        version = ensure_champion(config, store, progress)
        progress.step(f"{requests:,} unseen deals")
        deals = unseen_requests(requests + WARMUP_REQUESTS, seed=config.ecosystem.seed + 1)
        warmup, measured = deals[:WARMUP_REQUESTS], deals[WARMUP_REQUESTS:]
        load_average = os.getloadavg()[0]

        started = time.perf_counter()
        bench_dir = store.mlruns_dir.parent
        with running_service(
            store,
            sqlite_url(bench_dir / "decisions.sqlite"),
            bench_dir / "server.log",
            READY_TIMEOUT_SECONDS,
            progress=progress,
        ) as server:
            startup_seconds = time.perf_counter() - started
            progress.step(
                f"{WARMUP_REQUESTS} warm-up then {requests:,} measured requests (ready after {startup_seconds:.0f} s)"
            )
            service = measure_service(server, warmup, measured, progress)
        service_top = service.pop("top_ids")

        router = load_router(store, progress)
        progress.step(f"brute force and the eligible scan on the {len(measured):,} deals, in process")
        exact = measure_exact(router, measured, service_top, progress)

    trees = router.model.booster.num_trees() if isinstance(router.model, WinModel) else None
    return {
        "service": {**service, "startup_s": startup_seconds, "retrieval": asdict(router.settings)},
        "brute_force": exact["brute_force"],
        "eligible_scan": exact["eligible_scan"],
        "p50_ms": service["p50_ms"],
        "p95_ms": service["p95_ms"],
        "p99_ms": service["p99_ms"],
        "throughput_rps": service["throughput_rps"],
        "server_rss_mb": service["server_rss_mb"],
        "speedup_vs_brute_force": exact["brute_force"]["mean_ms"] / service["mean_ms"],
        "speedup_vs_eligible_scan": exact["eligible_scan"]["mean_ms"] / service["mean_ms"],
        "recall_at_10": exact["recall_at_10"],
        "brute_force_agrees": exact["brute_force_agrees"],
        "partners": config.ecosystem.partners,
        "requests": len(measured),
        "model": {
            "version": version,
            "encoder": config.encoder,
            "trees": trees,
            "config": asdict(config.model),
        },
        "deals": config.ecosystem.deals,
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_average,
    }
