"""Benchmarks: wall time and peak memory, each beside a baseline measured in the same run."""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from features.embed import make_encoder
from features.progress import SILENT, Progress
from features.synthetic import EcosystemConfig, generate_ecosystem
from training.config import WinModelConfig
from training.stages import build_dataset, embed_ecosystem
from training.win_model import LogisticBaseline, PairFrame, WinModelTrainer


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_generation(config: EcosystemConfig, progress: Progress = SILENT) -> dict[str, Any]:
    """Generate once; report seconds, rows per second and peak RSS."""
    started = time.perf_counter()
    ecosystem, _ = generate_ecosystem(config, progress=progress)
    seconds = time.perf_counter() - started
    rows = len(ecosystem.outcomes)
    return {
        "generator": {"seconds": seconds, "outcome_rows_per_second": rows / seconds, "peak_rss_mb": peak_rss_mb()},
        "rows": {
            "partners": len(ecosystem.partners),
            "deals": len(ecosystem.deals),
            "outcomes": rows,
            "engagement": len(ecosystem.engagement),
            "communications": len(ecosystem.communications),
        },
    }


def _head_tail(frame: PairFrame, tail_share: float) -> tuple[PairFrame, PairFrame]:
    """Split time-ordered rows at a deal boundary: (first 1 - share, last share)."""
    cut = int(len(frame) * (1 - tail_share))
    cut = int(np.searchsorted(frame.group_ids, frame.group_ids[cut])) if cut < len(frame) else cut
    return frame.take(slice(0, cut)), frame.take(slice(cut, None))


def bench_training(
    config: EcosystemConfig, model_config: WinModelConfig, progress: Progress = SILENT
) -> dict[str, Any]:
    """Fit the win model on every historical row (last 10% by time for early stopping and
    calibration) and logistic regression on the same rows; time each step.

    Embeddings use the hashing encoder so that the timing is of features and fitting; the MiniLM
    cost is measured by the embedding benchmarks.
    """
    progress.step(f"generating {config.partners:,} partners / {config.deals:,} deals")
    ecosystem, _ = generate_ecosystem(config, progress=progress)
    started = time.perf_counter()
    dataset = build_dataset(ecosystem, embed_ecosystem(ecosystem, make_encoder("hashing-64", None), progress), progress)
    feature_seconds = time.perf_counter() - started
    train, calibration = _head_tail(dataset.rows, 0.1)

    progress.step(f"fitting LightGBM on {len(dataset.rows):,} rows")
    started = time.perf_counter()
    model = WinModelTrainer(model_config).fit(train, calibration)
    fit_seconds = time.perf_counter() - started
    progress.step("fitting logistic regression on the same rows")
    started = time.perf_counter()
    LogisticBaseline().fit(train, calibration)
    baseline_seconds = time.perf_counter() - started
    return {
        "model": {
            "fit_seconds": fit_seconds,
            "rows_per_second": len(dataset.rows) / fit_seconds,
            "trees": model.model_.booster.num_trees(),
            "fit_seconds_ratio_vs_logistic_regression": fit_seconds / baseline_seconds,
        },
        "logistic_regression": {"fit_seconds": baseline_seconds},
        "features": {"seconds": feature_seconds, "rows_per_second": len(dataset.rows) / feature_seconds},
        "rows": {"total": len(dataset.rows), "train": len(train), "calibration": len(calibration)},
        "peak_rss_mb": peak_rss_mb(),
        "threads": model_config.threads,
    }
