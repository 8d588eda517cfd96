"""Dask training: the early-stopping replay (pure) and a LocalCluster fit against the one-machine fit."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.embed import make_encoder
from features.synthetic import EcosystemConfig, generate_ecosystem
from training.config import SplitConfig, WinModelConfig
from training.dask_fit import DaskWinModelTrainer, early_stopping_iteration, staged_log_loss
from training.evaluate import log_loss
from training.stages import build_dataset, embed_ecosystem, time_split
from training.win_model import WinModelTrainer


def test_early_stopping_keeps_the_best_iteration_before_patience_runs_out() -> None:
    losses = np.array([0.70, 0.60, 0.55, 0.56, 0.57, 0.58, 0.50])
    assert early_stopping_iteration(losses, patience=3) == 3  # stops at iteration 6, before 0.50
    assert early_stopping_iteration(losses, patience=5) == 7
    assert early_stopping_iteration(np.array([0.5]), patience=1) == 1
    assert early_stopping_iteration(np.array([0.5, 0.5, 0.5]), patience=10) == 1  # ties are no improvement


def test_staged_log_loss_matches_each_truncated_model() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 3))
    labels = (features[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(features, labels), num_boost_round=5)
    losses = staged_log_loss(booster, features, labels)
    expected = [log_loss(labels, booster.predict(features, num_iteration=k)) for k in range(1, 6)]
    np.testing.assert_allclose(losses, expected, rtol=1e-9)
    assert np.all(np.diff(losses) < 0)  # training loss falls tree by tree


def test_dask_fit_refuses_lambdarank() -> None:
    with pytest.raises(ValueError, match="binary"):
        DaskWinModelTrainer(WinModelConfig(objective="lambdarank"), "tcp://127.0.0.1:1")


@pytest.mark.integration
def test_local_cluster_fit_matches_one_machine_within_noise() -> None:
    from distributed import LocalCluster

    ecosystem, _ = generate_ecosystem(EcosystemConfig(partners=120, deals=1500, seed=1))
    dataset = build_dataset(ecosystem, embed_ecosystem(ecosystem, make_encoder("hashing-16", None)))
    splits = time_split(dataset, SplitConfig())
    config = WinModelConfig(n_estimators=40)
    single = WinModelTrainer(config).fit(splits.train, splits.calibration)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        distributed = DaskWinModelTrainer(config, cluster.scheduler_address).fit(splits.train, splits.calibration)
    single_loss = log_loss(splits.test.labels, single.predict_win_probability(splits.test.features))
    distributed_loss = log_loss(splits.test.labels, distributed.predict_win_probability(splits.test.features))
    assert 1 <= distributed.model_.booster.num_trees() <= 40
    assert distributed_loss == pytest.approx(single_loss, abs=0.02)
    assert distributed_loss < log_loss(splits.test.labels, np.full(len(splits.test), splits.train.labels.mean()))
