"""Sentiment benchmark: texts per second of the registered champion at batch 32, in process, with the
serving encoder (ONNX int8 MiniLM, no embedding cache), beside the encoder alone and VADER; and
(`bench_sentiment_http`) POST /sentiment over real HTTP: one-text latency and batch-32 throughput."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from features.embed import ONNX_EXPORT_DIR, Encoder, OnnxMiniLMEncoder, make_encoder
from features.progress import SILENT, Progress
from features.sentiment_data import read_corpus
from models.registry import CHAMPION, REGISTERED_SENTIMENT_MODEL, Paths, local_bundle, version_by_alias
from models.sentiment import SentimentModel, read_manifest
from partnermatch.bench.route import running_service
from partnermatch.bench.train import peak_rss_mb
from serving.stores import sqlite_url
from training.sentiment import vader_scores

BATCH_SIZE = 32
THREADS = 2
ONNX_ENCODER = "minilm-onnx-int8"


def _uncached_encoder(name: str, cache_dir: Path) -> Encoder:
    """The encoder `name` without the embedding cache (a cache hit would measure SQLite, not the model)."""
    if name == ONNX_ENCODER:
        return OnnxMiniLMEncoder(cache_dir / ONNX_EXPORT_DIR, threads=THREADS, batch_size=BATCH_SIZE)
    return make_encoder(name, None, threads=THREADS, batch_size=BATCH_SIZE)


def _batches_per_second(texts: list[str], score: Any) -> dict[str, float]:
    """Call `score` on consecutive batches of BATCH_SIZE texts; texts per second and batch latency (ms)."""
    seconds = []
    for start in range(0, len(texts), BATCH_SIZE):
        began = time.perf_counter()
        score(texts[start : start + BATCH_SIZE])
        seconds.append(time.perf_counter() - began)
    batch_ms = np.array(seconds) * 1000.0
    return {
        "texts_per_second": len(texts) / float(np.sum(seconds)),
        "batch_ms_p50": float(np.percentile(batch_ms, 50)),
        "batch_ms_p95": float(np.percentile(batch_ms, 95)),
    }


def bench_sentiment(
    texts_path: Path, corpus_format: str, limit: int, paths: Paths, progress: Progress = SILENT
) -> dict[str, Any]:
    """Score up to `limit` texts of `texts_path` with `partnermatch-sentiment@champion`.

    Returns {"model": {texts_per_second, batch_ms_p50, batch_ms_p95}, "encoder": {... embedding
    only}, "vader": {...}, "rows", "batch_size", "threads", "model_version", "peak_rss_mb"}. The first
    batch is scored once before timing (session start-up). Raises ValueError when no champion exists.
    """
    champion = version_by_alias(paths, REGISTERED_SENTIMENT_MODEL, CHAMPION)
    if champion is None:
        raise ValueError(f"no {REGISTERED_SENTIMENT_MODEL}@{CHAMPION}: run `partnermatch train-sentiment` first")
    directory = local_bundle(paths, champion)
    encoder = _uncached_encoder(read_manifest(directory)["encoder"], paths.cache_dir)
    model = SentimentModel.load(directory, encoder)
    texts = list(read_corpus(texts_path, corpus_format).texts[:limit])
    model.predict(texts[:BATCH_SIZE])
    progress.step(f"scoring {len(texts):,} texts in batches of {BATCH_SIZE} (model, encoder alone, VADER)")
    return {
        "model": _batches_per_second(texts, model.predict),
        "encoder": _batches_per_second(texts, encoder.encode),
        "vader": _batches_per_second(texts, vader_scores),
        "rows": len(texts),
        "batch_size": BATCH_SIZE,
        "threads": THREADS,
        "model_version": f"{champion.name} v{champion.version}",
        "peak_rss_mb": peak_rss_mb(),
    }


HTTP_REQUESTS = 300  # one-text requests timed one after another
HTTP_CONCURRENCY = 4  # clients sending batches of BATCH_SIZE texts at once
SERVER_START_SECONDS = 180.0


def bench_sentiment_http(
    texts_path: Path, corpus_format: str, limit: int, paths: Paths, scratch: Path, progress: Progress = SILENT
) -> dict[str, Any]:
    """POST /sentiment over real HTTP (`bentoml serve`, one worker) with the registered champions.

    Returns {"one_text": {requests, latency_ms_p50, latency_ms_p99}, "batch_32": {texts_per_second,
    request_ms_p50, clients}}: one-text latency from sequential requests, and throughput of
    HTTP_CONCURRENCY clients each sending batches of BATCH_SIZE texts (adaptive batching may stack
    their requests). `scratch` holds the server's decision log, key store and log."""
    texts = list(read_corpus(texts_path, corpus_format).texts[:limit])
    with running_service(
        paths, sqlite_url(scratch / "decisions.sqlite"), scratch / "server.log", SERVER_START_SECONDS, progress=progress
    ) as server:
        with httpx.Client(base_url=server.url, timeout=60.0, headers=server.headers) as client:
            for text in texts[:20]:
                client.post("/sentiment", json={"texts": [text]}).raise_for_status()
            progress.step(f"{HTTP_REQUESTS} one-text requests")
            single = []
            for index in range(HTTP_REQUESTS):
                began = time.perf_counter()
                client.post("/sentiment", json={"texts": [texts[index % len(texts)]]}).raise_for_status()
                single.append(time.perf_counter() - began)
        batches = [texts[start : start + BATCH_SIZE] for start in range(0, len(texts) - BATCH_SIZE + 1, BATCH_SIZE)]
        progress.step(f"{len(batches)} requests of {BATCH_SIZE} texts from {HTTP_CONCURRENCY} clients")

        def send(batch: list[str]) -> float:
            with httpx.Client(base_url=server.url, timeout=60.0, headers=server.headers) as batch_client:
                began = time.perf_counter()
                batch_client.post("/sentiment", json={"texts": batch}).raise_for_status()
                return time.perf_counter() - began

        began = time.perf_counter()
        with ThreadPoolExecutor(HTTP_CONCURRENCY) as pool:
            request_seconds = list(pool.map(send, batches))
        elapsed = time.perf_counter() - began
    single_ms = np.array(single) * 1000.0
    return {
        "one_text": {
            "requests": HTTP_REQUESTS,
            "latency_ms_p50": float(np.percentile(single_ms, 50)),
            "latency_ms_p99": float(np.percentile(single_ms, 99)),
        },
        "batch_32": {
            "texts_per_second": len(batches) * BATCH_SIZE / elapsed,
            "request_ms_p50": float(np.percentile(np.array(request_seconds) * 1000.0, 50)),
            "clients": HTTP_CONCURRENCY,
        },
    }
