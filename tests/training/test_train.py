"""The training flow end to end at smoke size: real LightGBM, real MLflow registry (SQLite in a
tmp dir), the fake encoder for speed; promotion only when validation improves."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.pairs import FEATURE_COLUMNS
from features.synthetic import EcosystemConfig
from models.bundle import ModelBundle
from models.registry import CHALLENGER, CHAMPION, REGISTERED_WIN_MODEL, Paths, download_bundle, version_by_alias
from training.config import TrainConfig, WinModelConfig
from training.workflows import ensure_champion, train_from_options

SMOKE = EcosystemConfig(partners=150, deals=1500, seed=3)


def _config(**model: object) -> TrainConfig:
    return TrainConfig(
        ecosystem=SMOKE,
        encoder="hashing-32",
        model=WinModelConfig(**model),  # type: ignore[arg-type]
    )


@pytest.mark.integration
def test_train_registers_and_promotes_only_on_improvement(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    weak = train_from_options(_config(n_estimators=1, num_leaves=2), paths, None)
    assert weak.alias == CHAMPION and weak.champion_before is None

    strong = train_from_options(_config(n_estimators=60), paths, None)
    assert strong.promoted, strong.decision
    assert strong.champion_before == weak.version.version
    assert "promoted" in strong.decision

    again = train_from_options(_config(n_estimators=60), paths, None)
    assert not again.promoted and again.alias == CHALLENGER
    assert "challenger" in again.decision

    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert champion is not None and champion.version == strong.version.version
    assert ensure_champion(_config(), paths) == strong.version.version

    bundle = ModelBundle.load(download_bundle(paths, champion, isolated_paths / "dl"))
    assert bundle.manifest.encoder == "hashing-32"
    assert bundle.index is not None and len(bundle.index) == SMOKE.partners
    # The registry's pyfunc face answers like the bundle's model, under its logged signature.
    features = pd.DataFrame(
        np.random.default_rng(0).random((5, len(FEATURE_COLUMNS)), dtype=np.float32), columns=FEATURE_COLUMNS
    )
    served = mlflow.pyfunc.load_model(f"models:/{REGISTERED_WIN_MODEL}@{CHAMPION}")
    np.testing.assert_allclose(served.predict(features), bundle.win_model.predict_win_probability(features))
    metrics = strong.metrics
    for name in ("model", "random", "partner_win_rate", "embedding_cosine", "logistic_regression", "oracle"):
        assert {"roc_auc", "log_loss", "ece", "ndcg_at_10", "hit_at_1"} <= set(metrics[name]), name
    assert metrics["model"]["ndcg_at_10"] > metrics["random"]["ndcg_at_10"] + 0.2
    assert metrics["model"]["roc_auc"] > 0.65
    assert metrics["rows"]["test"] > 0 and metrics["rows"]["slate_deals"] > 0


def test_ensure_champion_trains_a_first_model(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    version = ensure_champion(_config(n_estimators=20), paths)
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert champion is not None and champion.version == version
