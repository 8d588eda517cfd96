"""`partnermatch bench ipp`: how fast the IPP model scores prospects, in batch and one at a time.

An IPP model is fitted on the benchmark ecosystem (cached like the demo one; nothing is registered).
Prospects are scored from their raw fields: embedding (uncached: the encoder's own cost), features
(FAISS similarity to top performers), prediction, TreeSHAP reasons, evidence and white space.
- batch: every partner of the ecosystem as a prospect through `score_in_batches`; prospects per second.
- single: held-out partners (never seen in training), one per call in this process, after a
  warm-up; p50 / p99 / mean latency in ms.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from features.embed import CachedEncoder, Encoder, make_encoder
from features.progress import SILENT, Progress
from features.prospects import partners_as_prospects
from models.ipp import score_in_batches
from models.registry import Paths
from partnermatch.bench.train import peak_rss_mb
from training.ipp import IppConfig, fit_ipp
from training.workflows import demo_ecosystem

WARMUP_PROSPECTS = 10


def _uncached(encoder: Encoder) -> Encoder:
    """The encoder without its on-disk cache, so that timing includes the embedding."""
    return encoder.inner if isinstance(encoder, CachedEncoder) else encoder


def bench_ipp(config: IppConfig, paths: Paths, singles: int, progress: Progress = SILENT) -> dict[str, Any]:
    """Fit on the benchmark ecosystem, then time batch and single-prospect scoring of the held-out partners."""
    ecosystem, _ = demo_ecosystem(config.ecosystem, paths, progress)
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
    milliseconds = np.asarray(latencies)
    return {
        "batch": {
            "prospects": len(prospects),
            "seconds": batch_seconds,
            "prospects_per_second": len(prospects) / batch_seconds,
        },
        "single": {
            "requests": singles,
            "p50_ms": float(np.percentile(milliseconds, 50)),
            "p99_ms": float(np.percentile(milliseconds, 99)),
            "mean_ms": float(milliseconds.mean()),
        },
        "fit_seconds": fit_seconds,
        "encoder": config.encoder,
        "partners": len(ecosystem.partners),
        "reference_partners": len(fit.model.reference.partner_ids),
        "peak_rss_mb": peak_rss_mb(),
    }
