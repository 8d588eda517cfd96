"""`partnermatch bench team --http`: `POST /team` over HTTP against the real service, beside the
exact solver in process on the same instances, and the server's memory with and without the team model.

1. A team ecosystem of `partners` (4 deals and 1 team deal per partner), a team model and a win
   champion trained on it, registered in an MLflow store of its own under `<cache>/bench-team/`
   (reused by later runs).
2. `bentoml serve` with the team model loaded: unseen deals of 2-3 products sent one at a time to
   `POST /team` (top 3 teams, at most 3 members) after a warm-up; client-side p50/p99 and the peak
   RSS of the server's process tree.
3. In process, on the same requests: `serving.team.team_problem` builds the identical instance; the
   exhaustive search (`models.team.exact_best_team`) and the optimiser are timed on it, and the
   optimiser's gap to the exact optimum is reported.
4. The same service with `PARTNERMATCH_SERVE_TEAMS=0` (routing only) for its peak RSS under `/route`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from features import schema
from features.progress import SILENT, Progress
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import CHAMPION, REGISTERED_TEAM_MODEL, Paths, version_by_alias
from models.team import assemble_teams, exact_best_team, model_scorer
from partnermatch.bench.route import (
    READY_TIMEOUT_SECONDS,
    PeakMemory,
    isolated_tracking,
    latency_summary,
    running_service,
)
from serving.service import SERVE_TEAMS_ENV, load_team_assembler
from serving.stores import sqlite_url
from serving.team import team_problem
from serving.team_schemas import TeamRequest
from training.config import TeamConfig, TrainConfig
from training.team import run_team_training
from training.workflows import ensure_champion

BENCH_DIR = "bench-team"
WARMUP_REQUESTS = 5
TOP_K, MAX_MEMBERS = 3, 3


def bench_config(partners: int) -> TeamConfig:
    """The team training of the benchmark: quick evaluation, the default models."""
    ecosystem = EcosystemConfig(partners=partners, deals=4 * partners, team_deals=partners)
    return TeamConfig(ecosystem=ecosystem, evaluation_deals=10, batch_deals=200, bootstrap=200)


def team_requests(count: int, seed: int) -> list[TeamRequest]:
    """`count` unseen deals needing 2-3 products (exhaustive search stays within reach)."""
    deals = generate_ecosystem(EcosystemConfig(partners=300, deals=4 * count, seed=seed))[0].deals
    rng = np.random.default_rng(seed)
    requests = []
    for _, row in deals.head(count).iterrows():
        products = rng.choice(schema.PRODUCTS, size=int(rng.integers(2, 4)), replace=False).tolist()
        deal = {
            "deal_id": str(row[schema.DEAL_ID]),
            "requirement_text": str(row[schema.REQUIREMENT_TEXT]),
            "products": products,
            "region": str(row[schema.DEAL_REGION]),
            "amount": float(row[schema.AMOUNT]),
            "segment": str(row[schema.SEGMENT]),
        }
        options = {"top_k": TOP_K, "max_members": MAX_MEMBERS}
        requests.append(TeamRequest.model_validate({"deal": deal, "options": options}))
    return requests


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _post_all(
    url: str, headers: dict[str, str], path: str, bodies: list[dict[str, Any]], progress: Progress
) -> list[float]:
    """Send the bodies one at a time; client-side seconds per call. RuntimeError on a non-200."""
    seconds = []
    with httpx.Client(base_url=url, timeout=120.0, headers=headers) as client:
        for body in bodies:
            started = time.perf_counter()
            response = client.post(path, json=body)
            seconds.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:500]}")
            progress.count(len(seconds), len(bodies))
    return seconds


def bench_team_http(partners: int, requests: int, paths: Paths, progress: Progress = SILENT) -> dict[str, Any]:
    """Run the benchmark; JSON with the service, exact and optimiser timings and both servers' memory."""
    config = bench_config(partners)
    with isolated_tracking():
        name = f"partners{partners}-deals{config.ecosystem.deals}-teams{config.ecosystem.team_deals}-{config.encoder}"
        store = Paths(mlruns_dir=paths.cache_dir / BENCH_DIR / name / "mlruns", cache_dir=paths.cache_dir)
        if version_by_alias(store, REGISTERED_TEAM_MODEL, CHAMPION) is None:
            progress.step(f"training the team model on {partners:,} partners (store {store.mlruns_dir})")
            ecosystem, truth = generate_ecosystem(config.ecosystem, progress)
            run_team_training(config, store, ecosystem, truth, progress)
        ensure_champion(TrainConfig(encoder=config.encoder, ecosystem=config.ecosystem), store, progress)
        bodies = [request.model_dump(mode="json") for request in team_requests(requests + WARMUP_REQUESTS, 1)]
        warmup, measured = bodies[:WARMUP_REQUESTS], bodies[WARMUP_REQUESTS:]
        bench_dir = store.mlruns_dir.parent
        load_average = os.getloadavg()[0]

        with running_service(
            store,
            sqlite_url(bench_dir / "decisions.sqlite"),
            bench_dir / "server.log",
            READY_TIMEOUT_SECONDS,
            progress=progress,
        ) as server:
            memory = PeakMemory(server.process.pid)
            _post_all(server.url, server.headers, "/team", warmup, SILENT)
            progress.step(f"{requests} POST /team over HTTP")
            service_seconds = _post_all(server.url, server.headers, "/team", measured, progress)
            team_rss = memory.stop().rss_mb

        route_bodies = [{"deal": body["deal"], "options": {"max_results": 10}} for body in bodies]
        with (
            _environment(SERVE_TEAMS_ENV, "0"),
            running_service(
                store, sqlite_url(bench_dir / "decisions.sqlite"), bench_dir / "server-route.log", READY_TIMEOUT_SECONDS
            ) as server,
        ):
            memory = PeakMemory(server.process.pid)
            progress.step(f"routing-only server: {len(route_bodies)} POST /route")
            _post_all(server.url, server.headers, "/route", route_bodies, progress)
            route_rss = memory.stop().rss_mb

        progress.step("exact search and the optimiser in process on the same instances")
        assembler = load_team_assembler(store)
        scorer = model_scorer(assembler.team_model)
        exact_seconds, optimiser_seconds, gaps, sizes = [], [], [], []
        for done, body in enumerate(measured):
            problem = team_problem(assembler, TeamRequest.model_validate(body))
            started = time.perf_counter()
            exact = exact_best_team(problem.instance, scorer, problem.limits)
            exact_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = assemble_teams(problem.instance, scorer, problem.limits, top_k=TOP_K)[0]
            optimiser_seconds.append(time.perf_counter() - started)
            gaps.append(1.0 - found.win_probability / exact.win_probability)
            sizes.append(int(np.prod(problem.candidate_counts)))
            progress.count(done + 1, len(measured))

    service, exhaustive = latency_summary(service_seconds), latency_summary(exact_seconds)
    return {
        "partners": partners,
        "requests": len(measured),
        "service": service,
        "p50_ms": service["p50_ms"],
        "p99_ms": service["p99_ms"],
        "exact_in_process": exhaustive | {"teams_enumerated_mean": float(np.mean(sizes))},
        "optimiser_in_process": latency_summary(optimiser_seconds),
        "exact_to_service_time_ratio": exhaustive["mean_ms"] / service["mean_ms"],
        "optimiser_gap_to_exact": {"mean": float(np.mean(gaps)), "max": float(np.max(gaps))},
        "server_rss_mb": {"with_team_model": team_rss, "routing_only": route_rss, "difference": team_rss - route_rss},
        "team_model_version": assembler.model_info.version,
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_average,
    }
