"""Team assembly benchmark, in process: 7 requirements x ~50 candidates each, scored by a LightGBM
team model the size of the default one. Reports p50/p99 of `assemble_teams` and, as the baseline,
exhaustive search on the same instances cut to `exact_candidates` per requirement (the full
50^7 enumeration is out of reach: its time is extrapolated from the measured cost per team).
"""

from __future__ import annotations

import time
from typing import Any

import lightgbm as lgb
import numpy as np

from features.progress import SILENT, Progress
from models.calibration import Calibrator
from models.team import (
    TEAM_FEATURES,
    TEAM_MIN_FIT,
    TeamInstance,
    TeamLimits,
    assemble_teams,
    exact_best_team,
    model_scorer,
)
from models.win import WinModel

REQUIREMENTS = 7
CANDIDATES = 50


def bench_instance(rng: np.random.Generator, partners: int) -> TeamInstance:
    """K = 7 requirements, 50 candidates each drawn from `partners`, beta-distributed fits."""
    union = np.unique(rng.choice(partners, size=REQUIREMENTS * CANDIDATES, replace=True))
    fit = np.full((REQUIREMENTS, union.size), np.nan)
    for k in range(REQUIREMENTS):
        fit[k, rng.choice(union.size, size=min(CANDIDATES, union.size), replace=False)] = rng.beta(2.0, 4.0, CANDIDATES)
    deals = np.triu(rng.poisson(0.05, (union.size, union.size)).astype(float), 1)
    deals = deals + deals.T
    return TeamInstance(
        products=tuple(f"requirement-{k}" for k in range(REQUIREMENTS)),
        partner_ids=np.array([f"P{u:06d}" for u in union]),
        fit=fit,
        load_ratio=rng.gamma(2.0, 0.4, union.size),
        joint=np.stack([deals, np.floor(deals * 0.4)], axis=-1),
    )


def bench_team_model(seed: int = 0) -> WinModel:
    """300 trees of 7 leaves on synthetic team features (the default team model's size)."""
    rng = np.random.default_rng(seed)
    features = rng.random((5000, len(TEAM_FEATURES))).astype(np.float32)
    labels = (rng.random(5000) < features[:, TEAM_FEATURES.index(TEAM_MIN_FIT)]).astype(int)
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 7,
            "learning_rate": 0.05,
            "verbosity": -1,
            "seed": seed,
            "num_threads": 2,
        },
        lgb.Dataset(features, labels),
        num_boost_round=300,
    )
    return WinModel(booster, Calibrator("platt"), TEAM_FEATURES)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def bench_team(
    partners: int, instances: int = 50, exact_candidates: int = 4, seed: int = 0, progress: Progress = SILENT
) -> dict[str, Any]:
    """Optimiser latency on `instances` problems, and exhaustive search on the same ones cut down."""
    rng = np.random.default_rng(seed)
    scorer = model_scorer(bench_team_model(seed))
    limits = TeamLimits(max_members=REQUIREMENTS)
    optimiser_seconds, exact_seconds, gaps = [], [], []
    per_team_seconds = []
    for done in range(instances):
        progress.count(done, instances)
        instance = bench_instance(rng, partners)
        started = time.perf_counter()
        assemble_teams(instance, scorer, limits, top_k=3)
        optimiser_seconds.append(time.perf_counter() - started)
        keep = np.zeros(instance.fit.shape, dtype=bool)
        for k in range(REQUIREMENTS):
            keep[k, instance.candidates(k)[:exact_candidates]] = True
        small = instance.restricted(keep)
        started = time.perf_counter()
        exact = exact_best_team(small, scorer, limits)
        exact_seconds.append(time.perf_counter() - started)
        per_team_seconds.append(exact_seconds[-1] / exact_candidates**REQUIREMENTS)
        gaps.append(1.0 - assemble_teams(small, scorer, limits, top_k=1)[0].win_probability / exact.win_probability)
    progress.count(instances, instances)
    optimiser, exhaustive = _percentiles(optimiser_seconds), _percentiles(exact_seconds)
    return {
        "partners": partners,
        "instances": instances,
        "requirements": REQUIREMENTS,
        "candidates_per_requirement": CANDIDATES,
        "optimiser": optimiser,
        "exact_cut_down": exhaustive | {"candidates_per_requirement": exact_candidates},
        "exact_to_optimiser_time_ratio_cut_down": exhaustive["mean_ms"] / optimiser["mean_ms"],
        "optimiser_gap_on_cut_down": {"mean": float(np.mean(gaps)), "max": float(np.max(gaps))},
        "exact_full_extrapolated_hours": float(np.mean(per_team_seconds)) * CANDIDATES**REQUIREMENTS / 3600.0,
    }
