"""Promotion against a champion that cannot score the new data, and a registry that fails at
promotion: real MLflow stores (SQLite in a tmp dir), real LightGBM, the hashing encoder."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from features.embed import make_encoder
from features.pairs import FEATURE_COLUMNS
from features.schema import Ecosystem
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.bundle import MANIFEST
from models.registry import (
    CHALLENGER,
    CHAMPION,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
    RegistryError,
    version_by_alias,
)
from training import tracking
from training.config import TrainConfig, WinModelConfig
from training.evaluate import log_loss
from training.stages import (
    FEATURES_TAG,
    RUN_NAME,
    TimeSplits,
    build_dataset,
    embed_ecosystem,
    evaluate_fitted,
    fit_models,
    log_and_register,
    make_bundle,
    promote,
    run_training,
    time_split,
)
from training.win_model import WinModelTrainer

SMOKE = EcosystemConfig(partners=60, deals=600, seed=3)
STRONG = WinModelConfig(n_estimators=60)
WEAK = WinModelConfig(n_estimators=1, num_leaves=2)
EXTRA_FEATURE = "close_value"  # as `evaluate maven --include-leak` adds it; the new data lacks it


def _config(model: WinModelConfig) -> TrainConfig:
    return TrainConfig(ecosystem=SMOKE, encoder="hashing-16", model=model)


def _splits(ecosystem: Ecosystem, config: TrainConfig) -> TimeSplits:
    embeddings = embed_ecosystem(ecosystem, make_encoder(config.encoder, None))
    return time_split(build_dataset(ecosystem, embeddings), config.split)


@pytest.fixture(scope="module")
def ecosystem() -> Ecosystem:
    return generate_ecosystem(SMOKE)[0]


def _register_champion(
    paths: Paths, ecosystem: Ecosystem, model: WinModelConfig, extra_feature: bool, log_config: bool = True
) -> RegisteredVersion:
    """Fit `model` (on one more feature column when `extra_feature`), register it and make it the
    champion; without `log_config` its run carries no params, as a tool that logs none would."""
    config = _config(model)
    embeddings = embed_ecosystem(ecosystem, make_encoder(config.encoder, None))
    dataset = build_dataset(ecosystem, embeddings)
    splits = time_split(dataset, config.split)
    feature_names = FEATURE_COLUMNS
    if extra_feature:
        splits = splits.with_feature(EXTRA_FEATURE, np.random.default_rng(0).random(len(ecosystem.outcomes)))
        feature_names = (*FEATURE_COLUMNS, EXTRA_FEATURE)
    fitted = fit_models(config.model, splits, feature_names)
    evaluation = evaluate_fitted(fitted, splits, dataset, ecosystem, None, config.evaluation)
    bundle = make_bundle(config, dataset, ecosystem, fitted, splits)
    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(paths, "champion") as run:
        if log_config:
            version = log_and_register(run, config, embeddings, splits, evaluation, bundle, Path(tmp))
        else:
            version = tracking.register_bundle(
                run,
                bundle.save(Path(tmp) / "bundle"),
                REGISTERED_WIN_MODEL,
                feature_names,
                {FEATURES_TAG: ",".join(feature_names)},
            )
        assert promote(run, paths, config, version, splits, evaluation, Path(tmp)).alias == CHAMPION
    return version


def _champion_version(paths: Paths) -> str:
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert champion is not None
    return champion.version


@pytest.mark.integration
def test_a_champion_needing_a_feature_the_data_lacks_is_compared_on_its_refit_configuration(
    isolated_paths: Path, ecosystem: Ecosystem
) -> None:
    paths = Paths.from_environment()
    champion = _register_champion(paths, ecosystem, STRONG, extra_feature=True)

    report = run_training(_config(WEAK), paths, ecosystem)

    # The champion's configuration refit on the same windows, without the feature the data lacks.
    splits = _splits(ecosystem, _config(WEAK))
    refit = WinModelTrainer(STRONG).fit(splits.train, splits.calibration)
    refit_log_loss = log_loss(splits.validation.labels, refit.predict_win_probability(splits.validation.features))
    assert not report.promoted and report.alias == CHALLENGER, report.decision
    assert f"champion v{champion.version} {refit_log_loss:.4f}" in report.decision
    assert EXTRA_FEATURE in report.decision and "refit" in report.decision
    assert _champion_version(paths) == champion.version
    params = MlflowClient().get_run(report.version.run_id).data.params
    assert "refit" in params["champion_comparison"] and EXTRA_FEATURE in params["champion_comparison"]


@pytest.mark.integration
def test_a_champion_whose_bundle_cannot_be_read_is_compared_on_a_refit(
    isolated_paths: Path, ecosystem: Ecosystem
) -> None:
    paths = Paths.from_environment()
    champion = _register_champion(paths, ecosystem, WEAK, extra_feature=False)
    (manifest,) = paths.artifact_root.rglob(MANIFEST)
    manifest.write_text(json.dumps({"format_version": 1}))  # a bundle of a format this code refuses

    report = run_training(_config(STRONG), paths, ecosystem)

    assert report.promoted and report.champion_before == champion.version, report.decision
    assert "bundle cannot be read" in report.decision and "refit" in report.decision
    assert _champion_version(paths) == report.version.version


@pytest.mark.integration
def test_a_champion_that_cannot_be_compared_stays_and_the_reason_is_logged(
    isolated_paths: Path, ecosystem: Ecosystem
) -> None:
    paths = Paths.from_environment()
    champion = _register_champion(paths, ecosystem, WEAK, extra_feature=True, log_config=False)

    report = run_training(_config(STRONG), paths, ecosystem)

    assert not report.promoted and report.alias == CHALLENGER, report.decision
    assert "not compared" in report.decision and "cannot be refit" in report.decision
    assert "model_objective" in report.decision and EXTRA_FEATURE in report.decision
    assert _champion_version(paths) == champion.version
    run = MlflowClient().get_run(report.version.run_id)
    assert "cannot be refit" in run.data.params["champion_comparison"]
    assert run.data.tags["decision"] == report.decision and run.data.tags["alias"] == CHALLENGER


@pytest.mark.integration
def test_a_registry_that_fails_at_promotion_promotes_nothing(isolated_paths: Path, ecosystem: Ecosystem) -> None:
    paths = Paths.from_environment()
    champion = _register_champion(paths, ecosystem, WEAK, extra_feature=False)
    config = _config(STRONG)
    embeddings = embed_ecosystem(ecosystem, make_encoder(config.encoder, None))
    dataset = build_dataset(ecosystem, embeddings)
    splits = time_split(dataset, config.split)
    fitted = fit_models(config.model, splits)
    evaluation = evaluate_fitted(fitted, splits, dataset, ecosystem, None, config.evaluation)
    database = paths.mlruns_dir / "mlflow.db"
    registered: list[RegisteredVersion] = []
    with (
        pytest.raises(RegistryError, match=re.escape(str(database.resolve()))),
        tempfile.TemporaryDirectory() as tmp,
        tracking.start_run(paths, RUN_NAME) as run,
    ):
        bundle = make_bundle(config, dataset, ecosystem, fitted, splits)
        registered.append(log_and_register(run, config, embeddings, splits, evaluation, bundle, Path(tmp)))
        intact = database.read_bytes()
        database.write_bytes(b"not a database " * 512)  # corrupt between registration and promotion
        try:
            promote(run, paths, config, registered[0], splits, evaluation, Path(tmp))
        finally:
            database.write_bytes(intact)

    assert _champion_version(paths) == champion.version
    client = MlflowClient()
    assert client.get_model_version(REGISTERED_WIN_MODEL, registered[0].version).aliases == []
    assert client.get_run(registered[0].run_id).info.status == "FAILED"
