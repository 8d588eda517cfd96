"""`partnermatch bench feedback`: CRM feedback into the real service over loopback, and the route
issued right after a partner's feedback.

The model and the service are `bench route`'s (its store under `<cache>/bench-route/`,
`running_service` with `workers` processes); the database is the run's own (a new SQLite file, or an
empty database at `--database-url`), since accepted events move the live features for good.

1. Accepted events per second: after `decisions` deals are routed (not timed), `concurrency` asyncio
   clients post `events` events as fast as they are answered: an outcome (won or lost) for each
   routed decision's first partner, the rest engagement events of partners drawn at random.
   `accepted_events_per_s` = events answered 200 / wall time; latency of each POST /feedback.
2. Route right after feedback: partners whose live load is 0 and whose declared capacity c is the
   smallest (none that step 1 gave an outcome), until `samples` routes are due. For each, c times:
   route a deal in the partner's region restricted to a candidate pool of it and `POOL_COMPANIONS`
   roomy partners of that region (a decision), post the partner's outcome for that decision, then at
   once POST /route a new deal (its own deal id, else it would be a retry) to the same pool: that
   route is timed. Checked on each one (a failure raises
   RuntimeError): the partner is in the answer while fewer than c of its outcomes have come back,
   and the capacity constraint has left it out once c have, so the live features hold every outcome
   acknowledged before the route, whichever worker took it.

Latency is the client's clock around each call (JSON both ways included). The clients share the
machine with the server: on 2 cores their CPU time is taken from the workers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import make_url

from features.pairs import to_seconds
from features.progress import SILENT, Progress
from models.registry import Paths
from partnermatch.bench.route import (
    READY_TIMEOUT_SECONDS,
    RunningServer,
    bench_paths,
    isolated_tracking,
    latency_summary,
    running_service,
    unseen_requests,
)
from serving.routing import Router
from serving.routing.state import partner_load_ratio
from serving.service import load_router
from serving.stores import sqlite_url
from training.config import TrainConfig
from training.workflows import ensure_champion

REQUEST_TIMEOUT_SECONDS = 30.0
POOL_COMPANIONS = 3  # partners routed beside the loaded one: the route still answers once it is left out
ENGAGEMENT_KIND = "portal_login"


@dataclass(frozen=True)
class FeedbackSettings:
    """What `bench_feedback` sends: `events` events from `concurrency` clients (an outcome for each
    of `decisions` routed deals, the rest engagement), then `samples` routes right after feedback;
    the service runs `workers` processes."""

    events: int = 2000
    decisions: int = 400
    concurrency: int = 8
    samples: int = 200
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.decisions <= self.events:
            raise ValueError(f"decisions must be in [0, events={self.events}], got {self.decisions}")
        if min(self.events, self.concurrency, self.samples, self.workers) < 1:
            raise ValueError(f"events, concurrency, samples and workers must be >= 1, got {self}")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _outcome(decision_id: str, partner_id: str, won: bool) -> dict[str, Any]:
    event = {"type": "outcome", "decision_id": decision_id, "partner_ids": [partner_id]}
    return event | {"result": "won" if won else "lost", "closed_at": _now()}


def _feedback_body(event: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "event": event}


def _answer(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    return dict(response.json())


async def route_all(server: RunningServer, bodies: list[dict[str, Any]], concurrency: int) -> list[dict[str, Any]]:
    """Route every body (at most `concurrency` at once); the answers in order."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:

        async def route(body: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                return _answer(await client.post("/route", json=body), "routing a deal to close")

        return list(await asyncio.gather(*(route(body) for body in bodies)))


async def drive_feedback(
    server: RunningServer, routed: list[dict[str, Any]], partner_ids: list[str], settings: FeedbackSettings, seed: int
) -> tuple[dict[str, Any], set[str]]:
    """Step 1 (module docstring): the figures, and the partners given an outcome."""
    rng = np.random.default_rng(seed)
    outcomes = [
        _outcome(answer["decision_id"], answer["partners"][0]["partner_id"], bool(rng.random() < 0.5))
        for answer in routed
    ]
    engaged = rng.choice(partner_ids, size=settings.events - len(outcomes))
    engagement = [
        {"type": "engagement", "partner_id": str(partner), "kind": ENGAGEMENT_KIND, "occurred_at": _now()}
        for partner in engaged
    ]
    events = iter([*outcomes, *engagement])
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:

        async def crm() -> None:
            for event in events:
                sent = time.perf_counter()
                try:
                    response = await client.post("/feedback", json=_feedback_body(event))
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors[f"http_{response.status_code}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(crm() for _ in range(settings.concurrency)))
        wall = time.perf_counter() - started
    if not latencies:
        raise RuntimeError(f"no feedback event was accepted: errors {dict(errors)}")
    figures = {
        "accepted": len(latencies),
        "outcomes": len(outcomes),
        "engagement": len(engagement),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wall_s": wall,
        "accepted_events_per_s": len(latencies) / wall,
        "latency": latency_summary(latencies),
    }
    return figures, {event["partner_ids"][0] for event in outcomes}


@dataclass(frozen=True)
class LoadProbe:
    """A partner to fill to its declared `capacity` through feedback, routed among `pool` (itself first)."""

    partner_id: str
    capacity: int
    region: str
    pool: tuple[str, ...]


def load_probes(router: Router, touched: set[str], samples: int, now: datetime) -> list[LoadProbe]:
    """Partners with no live load at `now`, none in `touched`, smallest declared capacity first,
    until their capacities sum to at least `samples`; each with the `POOL_COMPANIONS` partners of
    its first region with the largest capacity (and no load) as companions."""
    context = router.context
    idle = partner_load_ratio(context, int(to_seconds([now.astimezone(UTC).replace(tzinfo=None)])[0])) == 0.0
    idle &= ~np.isin(context.partner_ids, list(touched))
    capacity = context.partner_capacity
    roomy = np.argsort(-capacity, kind="stable")
    probes: list[LoadProbe] = []
    companions_used: set[int] = set()
    for row in np.argsort(capacity, kind="stable"):
        if sum(probe.capacity for probe in probes) >= samples:
            break
        if not idle[row] or row in companions_used or not context.partner_regions[row].any():
            continue
        region = int(np.flatnonzero(context.partner_regions[row])[0])
        companions = [
            int(other)
            for other in roomy
            if other != row and idle[other] and context.partner_regions[other, region] and capacity[other] > 1
        ][:POOL_COMPANIONS]
        if len(companions) < POOL_COMPANIONS:
            continue
        companions_used.update(companions)
        idle[[row, *companions]] = False  # a companion is never filled, a filled partner never a companion
        pool = (str(context.partner_ids[row]), *(str(context.partner_ids[other]) for other in companions))
        probes.append(LoadProbe(pool[0], int(capacity[row]), str(context.regions[region]), pool))
    if sum(probe.capacity for probe in probes) < samples:
        raise RuntimeError(f"the catalogue has too few idle partners for {samples} routes after feedback")
    return probes


def measure_route_after_feedback(
    server: RunningServer, probes: list[LoadProbe], deals: list[dict[str, Any]], progress: Progress = SILENT
) -> dict[str, Any]:
    """Step 2 (module docstring): latency of each route right after its partner's outcome, checked."""
    route_latencies: list[float] = []
    feedback_latencies: list[float] = []
    excluded = 0
    total = sum(probe.capacity for probe in probes)
    deal_bodies = itertools.cycle(deals)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        for probe in probes:
            deal = next(deal_bodies)["deal"] | {"region": probe.region}
            options = {"candidate_pool": list(probe.pool), "max_results": len(probe.pool)}

            decision = _answer(client.post("/route", json=_new_deal(deal, options)), f"routing for {probe.partner_id}")
            for fed_back in range(1, probe.capacity + 1):
                sent = time.perf_counter()
                event = _outcome(decision["decision_id"], probe.partner_id, won=fed_back % 2 == 0)
                _answer(client.post("/feedback", json=_feedback_body(event)), f"outcome for {probe.partner_id}")
                feedback_latencies.append(time.perf_counter() - sent)
                sent = time.perf_counter()
                routed = client.post("/route", json=_new_deal(deal, options))
                decision = _answer(routed, f"routing after {probe.partner_id}'s outcome")
                route_latencies.append(time.perf_counter() - sent)
                _check_live_load(decision, probe, fed_back)
                excluded += fed_back == probe.capacity
                progress.count(len(route_latencies), total)
    return {
        "routes": len(route_latencies),
        "partners_filled": len(probes),
        "capacities": dict(sorted(Counter(probe.capacity for probe in probes).items())),
        "left_out_at_capacity": excluded,
        "latency": latency_summary(route_latencies),
        "feedback_latency": latency_summary(feedback_latencies),
    }


def _new_deal(deal: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A route body for `deal` under a deal id of its own: the same deal id and body again would be a
    retry, answered with the first decision."""
    return {"deal": deal | {"deal_id": uuid.uuid4().hex}, "options": options}


def _check_live_load(answer: dict[str, Any], probe: LoadProbe, fed_back: int) -> None:
    """The bench's assertion: `probe.partner_id` with `fed_back` outcomes is routed below its capacity
    and left out by the capacity constraint at it."""
    routed = {partner["partner_id"] for partner in answer["partners"]}
    removed = {constraint["name"]: constraint["removed"] for constraint in answer["constraints"]}
    full = fed_back >= probe.capacity
    if (probe.partner_id in routed) == full or (removed.get("capacity", 0) >= 1) != full:
        state = "full" if full else "below capacity"
        raise RuntimeError(
            f"the route right after feedback does not show the live load: partner {probe.partner_id} "
            f"({fed_back} outcome(s) of capacity {probe.capacity}, {state}) was "
            f"{'routed' if probe.partner_id in routed else 'left out'}; constraints removed {removed}; "
            f"features as of {answer['features_as_of']}"
        )


def bench_feedback(
    config: TrainConfig,
    paths: Paths,
    settings: FeedbackSettings,
    database_url: str | None = None,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Run the benchmark for `config.ecosystem` on `database_url` (None: a new SQLite file); JSON
    with `feedback` (step 1) and `route_after_feedback` (step 2) plus headline keys."""
    with isolated_tracking(), tempfile.TemporaryDirectory(prefix="bench-feedback-") as scratch:
        store = bench_paths(config, paths)
        progress.step(f"model for {config.ecosystem.partners:,} partners (store {store.mlruns_dir})")
        version = ensure_champion(config, store, progress)
        router = load_router(store, progress)  # also computes the routing state the workers map
        requests = unseen_requests(max(settings.decisions, 1), seed=config.ecosystem.seed + 1)
        bodies = [request.model_dump(mode="json") for request in requests]
        url = database_url or sqlite_url(Path(scratch) / "database.sqlite")
        load_average = os.getloadavg()[0]
        with running_service(
            store, url, Path(scratch) / "server.log", READY_TIMEOUT_SECONDS, workers=settings.workers, progress=progress
        ) as server:
            progress.step(f"routing {settings.decisions:,} deals whose outcomes the CRM reports")
            routed = asyncio.run(route_all(server, bodies[: settings.decisions], settings.concurrency))
            progress.step(f"{settings.events:,} feedback events from {settings.concurrency} concurrent clients")
            partner_ids = [str(partner) for partner in router.context.partner_ids]
            feedback, touched = asyncio.run(
                drive_feedback(server, routed, partner_ids, settings, config.ecosystem.seed)
            )
            probes = load_probes(router, touched, settings.samples, datetime.now(UTC))
            progress.step(f"{sum(probe.capacity for probe in probes):,} routes right after a partner's feedback")
            after = measure_route_after_feedback(server, probes, bodies, progress)
    return {
        "feedback": feedback,
        "route_after_feedback": after,
        "accepted_events_per_s": feedback["accepted_events_per_s"],
        "route_after_feedback_p99_ms": after["latency"]["p99_ms"],
        "settings": asdict(settings),
        "database": make_url(url).get_backend_name(),
        "partners": config.ecosystem.partners,
        "deals": config.ecosystem.deals,
        "model": {"version": version, "encoder": config.encoder},
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_average,
    }
