"""Scale-out fitting of the win model's LightGBM on a Dask cluster (`lightgbm.dask`).

`DaskWinModelTrainer(config, scheduler_address)` is a `WinModelTrainer` whose booster is fitted by
`DaskLGBMClassifier` on the cluster: the training rows go to the workers as a dask array partitioned by
rows (one partition per worker), each worker builds its LightGBM shard and they train one model
together (LightGBM's data-parallel tree learner). The rest happens on the driver, as on one machine:
early stopping is replayed on the calibration window's log-loss per iteration (`lightgbm.dask` has no
reliable early stopping), then the calibration map is selected and fitted (`WinModelTrainer.calibrated`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from features.pairs import FEATURE_COLUMNS
from training.config import WinModelConfig
from training.win_model import PairFrame, WinModelTrainer


def early_stopping_iteration(losses: np.ndarray, patience: int) -> int:
    """The iteration (1-based) LightGBM's early stopping keeps for per-iteration validation `losses`
    ((n_iterations,), lower is better): the best one seen before `patience` iterations pass without a
    strictly lower loss (or the list ends)."""
    best = 0
    for iteration in range(1, len(losses)):
        if losses[iteration] < losses[best]:
            best = iteration
        elif iteration - best >= patience:
            break
    return best + 1


def staged_log_loss(booster: object, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n_iterations,) binary log-loss of `booster` (an `lgb.Booster`) on (features, labels) after each
    iteration, from one raw-score pass per tree added to a running sum."""
    import lightgbm as lgb

    assert isinstance(booster, lgb.Booster)
    raw = np.zeros(len(labels), dtype=np.float64)
    losses = np.zeros(booster.num_trees(), dtype=np.float64)
    for iteration in range(booster.num_trees()):
        raw += booster.predict(features, start_iteration=iteration, num_iteration=1, raw_score=True)
        probability = np.clip(expit(raw), 1e-15, 1 - 1e-15)
        losses[iteration] = -np.mean(labels * np.log(probability) + (1 - labels) * np.log(1 - probability))
    return losses


class DaskWinModelTrainer(WinModelTrainer):
    """`WinModelTrainer` with the booster fitted on the Dask cluster at `scheduler_address`
    ("tcp://host:8786", or a `distributed.LocalCluster`'s `scheduler_address`). Binary objective only."""

    def __init__(
        self,
        config: WinModelConfig | None,
        scheduler_address: str,
        feature_names: tuple[str, ...] = FEATURE_COLUMNS,
    ) -> None:
        super().__init__(config, feature_names=feature_names)
        if self.config.objective != "binary":
            raise ValueError(f"Dask training fits the binary objective only, not {self.config.objective!r}")
        self.scheduler_address = scheduler_address

    def fit(self, train: PairFrame, calibration: PairFrame) -> DaskWinModelTrainer:
        import dask.array as da
        from distributed import Client
        from lightgbm.dask import DaskLGBMClassifier

        features = train.features[list(self.feature_names)].to_numpy(dtype=np.float32)
        with Client(self.scheduler_address) as client:
            partitions = max(1, len(client.scheduler_info()["workers"]))
            rows_per_partition = -(-len(features) // partitions)
            train_features = da.from_array(features, chunks=(rows_per_partition, features.shape[1]))
            train_labels = da.from_array(train.labels, chunks=(rows_per_partition,))
            # Native LightGBM names, as the one-machine fit uses: the wrapper passes them through as they are.
            # Threads are the workers' own (lightgbm.dask ignores num_threads, with a warning).
            params: dict[str, Any] = {name: value for name, value in self._params().items() if name != "num_threads"}
            model = DaskLGBMClassifier(client=client, n_estimators=self.config.n_estimators, **params)
            model.fit(train_features, train_labels, feature_name=list(self.feature_names))
            booster = model.to_local().booster_
        calibration_features = calibration.features[list(self.feature_names)].to_numpy(dtype=np.float32)
        losses = staged_log_loss(booster, calibration_features, calibration.labels)
        self.calibrated(booster, early_stopping_iteration(losses, self.config.early_stopping_rounds), calibration)
        return self
