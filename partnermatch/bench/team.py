"""Team assembly benchmark, in process: 7 requirements x ~50 candidates each, scored by a team
model fitted as in training (`training.team.fit_team_model`). Reports p50/p99 of `assemble_teams` and, as the baseline,
exhaustive search on the same instances cut to `exact_candidates` per requirement (the full
50^7 enumeration is out of reach: its time is extrapolated from the measured cost per team).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from features.progress import SILENT, Progress
from models.team import (
    TEAM_FEATURES,
    TEAM_LOG_FIT,
    TEAM_PAIRS_WITH_HISTORY,
    TEAM_SIZE,
    TeamInstance,
    TeamLimits,
    TeamModel,
    assemble_teams,
    exact_best_team,
    model_scorer,
    team_features,
)
from training.config import TeamConfig
from training.team import fit_team_model
from training.win_model import PairFrame

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


def bench_team_model(seed: int = 0, instances: int = 20, teams_per_instance: int = 200) -> TeamModel:
    """The team model fitted (as in training) on random teams of bench instances, labelled by a
    team truth of the domain's shape: the product of fits, co-sell history up, hand-offs down."""
    rng = np.random.default_rng(seed)
    features = []
    for _ in range(instances):
        instance = bench_instance(rng, 10 * REQUIREMENTS * CANDIDATES)
        teams = np.column_stack([rng.choice(instance.candidates(k), teams_per_instance) for k in range(REQUIREMENTS)])
        features.append(team_features(instance, teams))
    frame = pd.DataFrame(np.concatenate(features), columns=list(TEAM_FEATURES))
    column = {name: frame[name].to_numpy(dtype=np.float64) for name in TEAM_FEATURES}
    logit = 0.5 * column[TEAM_LOG_FIT] + column[TEAM_PAIRS_WITH_HISTORY] - 0.15 * column[TEAM_SIZE] + 2.0
    labels = (rng.random(len(frame)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    rows = np.arange(len(frame))
    pair_frame = PairFrame(features=frame, labels=labels, group_ids=rows, source_rows=rows)
    return fit_team_model(TeamConfig(), pair_frame, pair_frame)


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
