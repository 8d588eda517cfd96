"""Embedding benchmark: the bulk path (what training runs) against the old one-text-per-call path, in the
same run, and the serving one-text latency before (dynamic int8) and after (static int8).

Texts are real ones (a labelled corpus such as GoEmotions; labels unused). No encoder uses the on-disk
embedding cache: a hit would measure SQLite, not the model. The machine may be shared: the ratio of two
paths timed in one run is the robust figure; absolute texts/s are reported beside the load average and
the texts per CPU-second of this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from features.embed import (
    BULK_ENCODER_THREADS,
    DYNAMIC_INT8,
    ONNX_EXPORT_DIR,
    ONNX_STATIC_EXPORT_DIR,
    STATIC_INT8,
    MiniLMEncoder,
    OnnxMiniLMEncoder,
)
from features.progress import SILENT, Progress
from features.sentiment_data import read_corpus

T = TypeVar("T")


@dataclass(frozen=True)
class EmbedBenchSettings:
    limit: int = 2000  # real texts embedded in bulk and one at a time by the serving encoder (>= 1,000)
    one_at_a_time_texts: int = 500  # of those, embedded by the old path (one text per call, one thread)
    serving_threads: int = 2  # onnxruntime threads of the service's encoder (serving.service)
    torch_reference: bool = True  # also compare with sentence-transformers fp32 (cosine mean and min)


@dataclass(frozen=True)
class Timed:
    """Wall and CPU seconds (all threads of this process) of one measured call."""

    wall: float
    cpu: float


def timed(call: Callable[[], T]) -> tuple[T, Timed]:
    """(result, Timed) of `call()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Timed(time.perf_counter() - wall, time.process_time() - cpu)


def max_cosine_deviation(left: np.ndarray, right: np.ndarray) -> float:
    """Largest 1 - cosine between matching rows of two (n, d) arrays of unit rows; 0.0 for equal rows."""
    cosines = np.sum(left.astype(np.float64) * right.astype(np.float64), axis=1)
    return float(np.max(1.0 - cosines, initial=0.0))


def _rates(texts: int, seconds: Timed) -> dict[str, float]:
    return {"texts_per_second": texts / seconds.wall, "texts_per_cpu_second": texts / max(seconds.cpu, 1e-9)}


def _one_at_a_time(encoder: OnnxMiniLMEncoder, texts: list[str]) -> tuple[np.ndarray, Timed, np.ndarray]:
    """(vectors (n, 384), total Timed, per-call wall milliseconds (n,)) of one `encode` call per text."""
    vectors = np.zeros((len(texts), encoder.dimension), dtype=np.float32)
    milliseconds = np.zeros(len(texts))
    wall, cpu = time.perf_counter(), time.process_time()
    for row, text in enumerate(texts):
        vector, seconds = timed(lambda text=text: encoder.encode([text])[0])  # type: ignore[misc]
        vectors[row], milliseconds[row] = vector, seconds.wall * 1000.0
    return vectors, Timed(time.perf_counter() - wall, time.process_time() - cpu), milliseconds


def _latency(encoder: OnnxMiniLMEncoder, milliseconds: np.ndarray) -> dict[str, Any]:
    return {
        "encoder": encoder.name,
        "threads": encoder.threads,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
    }


def bench_embed(
    texts_path: Path, corpus_format: str, cache_dir: Path, settings: EmbedBenchSettings, progress: Progress = SILENT
) -> dict[str, Any]:
    """Bulk vs old path texts/s and their ratio, serving one-text latency before/after, the largest cosine
    deviation between bulk and serving vectors over every text, and (optionally) cosine to torch fp32.
    Builds the ONNX models under `cache_dir` when missing (before any timing)."""
    texts = list(dict.fromkeys(read_corpus(texts_path, corpus_format).texts))[: settings.limit]
    bulk = OnnxMiniLMEncoder(cache_dir / ONNX_STATIC_EXPORT_DIR, threads=BULK_ENCODER_THREADS, build=STATIC_INT8)
    old = OnnxMiniLMEncoder(cache_dir / ONNX_EXPORT_DIR, threads=1, batch_size=1, build=DYNAMIC_INT8)
    serving_before = OnnxMiniLMEncoder(
        cache_dir / ONNX_EXPORT_DIR, threads=settings.serving_threads, build=DYNAMIC_INT8
    )
    serving_after = OnnxMiniLMEncoder(
        cache_dir / ONNX_STATIC_EXPORT_DIR, threads=settings.serving_threads, batch_size=1, build=STATIC_INT8
    )
    progress.step("loading (and building when missing) the ONNX models")
    for encoder in (bulk, old, serving_before, serving_after):
        encoder.encode(texts[:8])  # sessions start outside the timings
    load_before = os.getloadavg()[0]
    progress.step(f"bulk: {len(texts):,} texts in batches of {bulk.batch_size} on {bulk.threads} threads")
    bulk_vectors, bulk_seconds = timed(lambda: bulk.encode(texts, progress))
    old_texts = texts[: settings.one_at_a_time_texts]
    progress.step(f"old path: {len(old_texts):,} texts one per call on 1 thread")
    _, old_seconds, _ = _one_at_a_time(old, old_texts)
    progress.step(f"serving, one text per call: {len(texts):,} texts before and after")
    _, _, before_ms = _one_at_a_time(serving_before, texts)
    serving_vectors, _, after_ms = _one_at_a_time(serving_after, texts)
    load_after = os.getloadavg()[0]
    bulk_rates, old_rates = _rates(len(texts), bulk_seconds), _rates(len(old_texts), old_seconds)
    results: dict[str, Any] = {
        "texts": len(texts),
        "source": str(texts_path),
        "mean_characters": float(np.mean([len(text) for text in texts])),
        "bulk": {"encoder": bulk.name, "threads": bulk.threads, "batch_size": bulk.batch_size, **bulk_rates},
        "one_at_a_time": {"encoder": old.name, "threads": old.threads, "texts": len(old_texts), **old_rates},
        "speedup": bulk_rates["texts_per_second"] / old_rates["texts_per_second"],
        "speedup_per_cpu_second": bulk_rates["texts_per_cpu_second"] / old_rates["texts_per_cpu_second"],
        "serving_latency": {"before": _latency(serving_before, before_ms), "after": _latency(serving_after, after_ms)},
        "max_cosine_deviation_bulk_vs_serving": max_cosine_deviation(bulk_vectors, serving_vectors),
        "max_abs_difference_bulk_vs_serving": float(np.max(np.abs(bulk_vectors - serving_vectors))),
        # Above 2 (the cores) the timings were shared with other processes.
        "load_average": {"before": load_before, "after": load_after},
    }
    if settings.torch_reference:
        progress.step("torch fp32 reference (sentence-transformers)")
        cosines = np.sum(bulk_vectors * MiniLMEncoder().encode(texts), axis=1)
        results["cosine_to_torch_fp32"] = {"mean": float(cosines.mean()), "min": float(cosines.min())}
    return results
