"""Embedding benchmark: bulk texts/s (what training does) against serving-style one-text calls, and how far
the bulk vectors are from the vectors the service computes for the same texts.

Texts are the profiles and requirement texts of a synthetic ecosystem (what training embeds). Neither
path uses the on-disk embedding cache: a cache hit would measure SQLite, not the model. The machine's
load average is reported beside the figures, since other processes share its cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features import schema
from features.embed import BULK_ENCODER_THREADS, CachedEncoder, Encoder, make_encoder
from features.progress import SILENT, Progress
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.registry import Paths
from serving.service import SERVING_ENCODER_THREADS, serving_encoder


@dataclass(frozen=True)
class EmbedBenchSettings:
    encoders: tuple[str, ...] = ("minilm-onnx", "minilm-onnx-int8")  # `make_encoder` names
    bulk_texts: int = 4000  # texts embedded in one bulk call
    single_texts: int = 300  # of those, embedded one per call as the service does
    bulk_batch_size: int = 64  # texts per onnxruntime run in the bulk call
    ecosystem: EcosystemConfig = field(default_factory=lambda: EcosystemConfig(partners=2000, deals=4000, seed=0))


def ecosystem_texts(config: EcosystemConfig, limit: int) -> list[str]:
    """Up to `limit` distinct profile and requirement texts of a generated ecosystem, in table order."""
    ecosystem, _ = generate_ecosystem(config)
    profiles = ecosystem.partners[schema.PROFILE_TEXT].astype(str)
    texts = [*profiles, *ecosystem.deals[schema.REQUIREMENT_TEXT].astype(str)]
    return list(dict.fromkeys(texts))[:limit]


def _uncached(encoder: Encoder) -> Encoder:
    return encoder.inner if isinstance(encoder, CachedEncoder) else encoder


def max_cosine_deviation(left: np.ndarray, right: np.ndarray) -> float:
    """Largest 1 - cosine between matching rows of two (n, d) arrays of unit rows; 0.0 when equal."""
    return float(np.max(1.0 - np.sum(left.astype(np.float64) * right.astype(np.float64), axis=1), initial=0.0))


def _timed(call: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process) of `call()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_encoder(name: str, texts: list[str], settings: EmbedBenchSettings, paths: Paths) -> dict[str, Any]:
    """One encoder: bulk and serving-style texts/s, single-call latency, bulk vs serving deviation."""
    bulk = _uncached(make_encoder(name, paths.cache_dir, BULK_ENCODER_THREADS, settings.bulk_batch_size))
    serving = serving_encoder(name, paths.cache_dir)
    bulk.encode(texts[:8]), serving.encode(texts[:1])  # sessions start outside the timings
    bulk_vectors, bulk_seconds, bulk_cpu = _timed(lambda: bulk.encode(texts))
    singles = texts[: settings.single_texts]
    call_seconds = []
    single_vectors = np.zeros((len(singles), serving.dimension), dtype=np.float32)
    for row, text in enumerate(singles):
        single_vectors[row], seconds, _ = _timed(lambda text=text: serving.encode([text])[0])
        call_seconds.append(seconds)
    call_ms = np.array(call_seconds) * 1000.0
    return {
        "encoder": bulk.name,
        "bulk": {
            "texts_per_second": len(texts) / bulk_seconds,
            "texts_per_cpu_second": len(texts) / max(bulk_cpu, 1e-9),
            "batch_size": settings.bulk_batch_size,
            "threads": BULK_ENCODER_THREADS,
        },
        "serving": {
            "texts_per_second": len(singles) / float(np.sum(call_seconds)),
            "latency_ms_p50": float(np.percentile(call_ms, 50)),
            "latency_ms_p95": float(np.percentile(call_ms, 95)),
            "threads": SERVING_ENCODER_THREADS,
        },
        "max_cosine_deviation": max_cosine_deviation(bulk_vectors[: len(singles)], single_vectors),
        "max_abs_difference": float(np.max(np.abs(bulk_vectors[: len(singles)] - single_vectors))),
    }


def bench_embed(settings: EmbedBenchSettings, paths: Paths, progress: Progress = SILENT) -> dict[str, Any]:
    """{encoder name: bench_encoder(...)} plus "texts", "single_texts", "mean_characters", "load_average"
    (1-minute load average before and after: > 2 means the 2 cores were shared)."""
    progress.step(f"generating texts ({settings.ecosystem.partners:,} partners, {settings.ecosystem.deals:,} deals)")
    texts = ecosystem_texts(settings.ecosystem, settings.bulk_texts)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for name in settings.encoders:
        progress.step(f"{name}: {len(texts):,} texts in bulk, {settings.single_texts:,} one at a time")
        results[name] = bench_encoder(name, texts, settings, paths)
    return results | {
        "texts": len(texts),
        "single_texts": min(settings.single_texts, len(texts)),
        "mean_characters": float(np.mean([len(text) for text in texts])),
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
    }
