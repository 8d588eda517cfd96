"""Sentiment benchmark: texts per second of the registered champion at batch 32, in process, with the
serving encoder (ONNX int8 MiniLM, no embedding cache), beside the encoder alone and VADER."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from features.embed import ONNX_EXPORT_DIR, Encoder, OnnxMiniLMEncoder, make_encoder
from features.progress import SILENT, Progress
from features.sentiment_data import read_corpus
from models.registry import CHAMPION, REGISTERED_SENTIMENT_MODEL, Paths, local_bundle, version_by_alias
from models.sentiment import SentimentModel, read_manifest
from partnermatch.bench.train import peak_rss_mb
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
