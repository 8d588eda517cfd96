"""`partnermatch bench ipp`: how fast the IPP model scores prospects, in batch and one at a time.

An IPP model is fitted on the benchmark ecosystem (cached like the demo one; nothing is registered).
Prospects are scored from their raw fields: embedding (uncached: the encoder's own cost), features
(FAISS similarity to top performers), prediction, TreeSHAP reasons, evidence and white space.
- batch: every partner of the ecosystem as a prospect through `score_in_batches`; prospects per second.
- single: held-out partners (never seen in training), one per call in this process, after a
  warm-up; p50 / p99 / mean latency in ms.
- http (unless `http=False`): the same over HTTP against the real service (`bentoml serve` on
  loopback, `partnermatch.bench.route.running_service`), client clock around each call: `single`,
  one held-out prospect per `POST /ipp_fit` (p50 / p99 / mean ms; target p99 <= 30 ms on 2 cores),
  `batch_32`, LATENCY_BATCH prospects per request (p50 / p99 / mean ms per request), and `batch`,
  every partner in batches of MAX_PROSPECTS_PER_REQUEST (prospects per second). The
  service runs on a store of its own under `<cache>/bench-ipp/` (the user's registry is never
  touched): the IPP model registered by `train_ipp` on the benchmark ecosystem, and the small
  routing champion the service needs to start (`CARRIER_ECOSYSTEM`; /ipp_fit does not use it).
  Both are reused by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import httpx
import numpy as np

from features import schema
from features.embed import CachedEncoder, Encoder, make_encoder
from features.progress import SILENT, Progress
from features.prospects import Prospect, partners_as_prospects
from features.synthetic import EcosystemConfig, GroundTruth
from models.ipp import score_in_batches
from models.registry import CHAMPION, REGISTERED_IPP_MODEL, Paths, version_by_alias
from partnermatch.bench.route import isolated_tracking, running_service
from partnermatch.bench.train import peak_rss_mb
from serving.ipp_schemas import MAX_PROSPECTS_PER_REQUEST
from serving.stores import sqlite_url
from training.config import TrainConfig
from training.ipp import IppConfig, fit_ipp, train_ipp
from training.workflows import demo_ecosystem, ensure_champion

WARMUP_PROSPECTS = 10
LATENCY_BATCH = 32  # prospects per request in the timed batch requests (`batch_32`)
LATENCY_BATCHES_PER_SINGLE = 0.1  # timed batch requests per single-prospect request (at least one)
BENCH_DIR = "bench-ipp"
CARRIER_ECOSYSTEM = EcosystemConfig(partners=300, deals=3000, seed=5)  # the routing champion the service needs
READY_TIMEOUT_SECONDS = 600.0
HTTP_TIMEOUT_SECONDS = 120.0


def _uncached(encoder: Encoder) -> Encoder:
    """The encoder without its on-disk cache, so that timing includes the embedding."""
    return encoder.inner if isinstance(encoder, CachedEncoder) else encoder


def bench_ipp(
    config: IppConfig, paths: Paths, singles: int, progress: Progress = SILENT, http: bool = True
) -> dict[str, Any]:
    """Fit on the benchmark ecosystem, then time batch and single-prospect scoring of the held-out
    partners, in process and (with `http`) over HTTP."""
    ecosystem, truth = demo_ecosystem(config.ecosystem, paths, progress)
    started = time.perf_counter()
    fit = fit_ipp(ecosystem, make_encoder(config.encoder, paths.cache_dir), config, None, progress)
    fit_seconds = time.perf_counter() - started
    prospects = partners_as_prospects(ecosystem.partners)
    unseen = partners_as_prospects(fit.held_out)
    encoder = _uncached(make_encoder(config.encoder, paths.cache_dir))

    progress.step(f"batch: scoring {len(prospects)} prospects")
    started = time.perf_counter()
    score_in_batches(fit.model, prospects, encoder, progress)
    batch_seconds = time.perf_counter() - started

    progress.step(f"single: {singles} prospects one at a time")
    for prospect in unseen[:WARMUP_PROSPECTS]:
        score_in_batches(fit.model, [prospect], encoder)
    latencies = []
    for number in range(singles):
        prospect = unseen[number % len(unseen)]
        started = time.perf_counter()
        score_in_batches(fit.model, [prospect], encoder)
        latencies.append(1000.0 * (time.perf_counter() - started))
        progress.count(number + 1, singles)
    results = {
        "batch": {
            "prospects": len(prospects),
            "seconds": batch_seconds,
            "prospects_per_second": len(prospects) / batch_seconds,
        },
        "single": {"requests": singles, **latency_summary(latencies)},
        "fit_seconds": fit_seconds,
        "encoder": config.encoder,
        "partners": len(ecosystem.partners),
        "reference_partners": len(fit.model.reference.partner_ids),
        "peak_rss_mb": peak_rss_mb(),
        "load_average_1m": os.getloadavg()[0],
    }
    if http:
        results["http"] = bench_http(config, paths, ecosystem, truth, unseen, singles, progress)
    return results


def latency_summary(milliseconds: Sequence[float]) -> dict[str, float]:
    values = np.asarray(milliseconds)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def prospect_json(prospect: Prospect) -> dict[str, Any]:
    """A prospect as one item of `POST /ipp_fit`'s `prospects`."""
    return {
        "prospect_id": prospect.prospect_id,
        "profile_text": prospect.profile_text,
        "products": list(prospect.products),
        "certifications": dict(prospect.certifications),
        "regions": list(prospect.regions),
        "capacity": prospect.capacity,
    }


def bench_store(config: IppConfig, paths: Paths) -> Paths:
    """The benchmark service's MLflow store, keyed by ecosystem, encoder and IPP settings."""
    settings = {key: value for key, value in asdict(config).items() if key != "ecosystem"}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{config.ecosystem.cache_key}-{config.encoder}-{digest}"
    return Paths(mlruns_dir=paths.cache_dir / BENCH_DIR / name / "mlruns", cache_dir=paths.cache_dir)


def bench_http(
    config: IppConfig,
    paths: Paths,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth,
    unseen: Sequence[Prospect],
    singles: int,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """`POST /ipp_fit` over HTTP against the real service: one prospect per call, then batches."""
    # The API takes prospects that sell something somewhere (a partner whose profile names no product has none).
    usable = [prospect_json(p) for p in partners_as_prospects(ecosystem.partners) if p.products and p.regions]
    single_items = [prospect_json(p) for p in unseen if p.products and p.regions]
    with isolated_tracking():
        store = bench_store(config, paths)
        progress.step(f"service store {store.mlruns_dir}: the IPP model and a small routing champion")
        if version_by_alias(store, REGISTERED_IPP_MODEL, CHAMPION) is None:
            train_ipp(config, store, ecosystem, truth, progress)
        ensure_champion(TrainConfig(encoder=config.encoder, ecosystem=CARRIER_ECOSYSTEM), store, progress)
        bench_dir = store.mlruns_dir.parent
        with (
            running_service(
                store,
                sqlite_url(bench_dir / "decisions.sqlite"),
                bench_dir / "server.log",
                READY_TIMEOUT_SECONDS,
                progress=progress,
            ) as server,
            httpx.Client(base_url=server.url, headers=server.headers, timeout=HTTP_TIMEOUT_SECONDS) as client,
        ):

            def post(items: list[dict[str, Any]]) -> None:
                response = client.post("/ipp_fit", json={"prospects": items})
                if response.status_code != 200:
                    raise RuntimeError(f"POST /ipp_fit answered {response.status_code}: {response.text[:500]}")

            progress.step(f"http single: {WARMUP_PROSPECTS} warm-up then {singles} prospects, one per request")
            for item in single_items[:WARMUP_PROSPECTS]:
                post([item])
            latencies = []
            for number in range(singles):
                started = time.perf_counter()
                post([single_items[number % len(single_items)]])
                latencies.append(1000.0 * (time.perf_counter() - started))
                progress.count(number + 1, singles)
            batches = max(1, round(LATENCY_BATCHES_PER_SINGLE * singles))
            progress.step(f"http batch_{LATENCY_BATCH}: {batches} requests of {LATENCY_BATCH} prospects")
            batch_latencies = []
            for number in range(batches):
                start = (number * LATENCY_BATCH) % max(1, len(usable) - LATENCY_BATCH)
                started = time.perf_counter()
                post(usable[start : start + LATENCY_BATCH])
                batch_latencies.append(1000.0 * (time.perf_counter() - started))
                progress.count(number + 1, batches)
            progress.step(f"http batch: {len(usable)} prospects, {MAX_PROSPECTS_PER_REQUEST} per request")
            started = time.perf_counter()
            for start in range(0, len(usable), MAX_PROSPECTS_PER_REQUEST):
                post(usable[start : start + MAX_PROSPECTS_PER_REQUEST])
                progress.count(min(start + MAX_PROSPECTS_PER_REQUEST, len(usable)), len(usable))
            batch_seconds = time.perf_counter() - started
    return {
        "single": {"requests": singles, **latency_summary(latencies)},
        f"batch_{LATENCY_BATCH}": {"requests": len(batch_latencies), **latency_summary(batch_latencies)},
        "batch": {
            "prospects": len(usable),
            "per_request": MAX_PROSPECTS_PER_REQUEST,
            "seconds": batch_seconds,
            "prospects_per_second": len(usable) / batch_seconds,
        },
        "load_average_1m": os.getloadavg()[0],
    }
