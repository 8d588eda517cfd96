"""The IPP model on a small synthetic world (hashing encoder): split, fit, evaluation, scoring,
save/load, registration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from features import schema
from features.embed import HashingEncoder
from features.prospects import partners_as_prospects
from features.synthetic import EcosystemConfig, GroundTruth, generate_ecosystem
from models.ipp import IppModel, load_champion, score_in_batches
from models.registry import CHALLENGER, CHAMPION, Paths
from training.ipp import IppConfig, IppFit, fit_ipp, kaplan_meier_median, train_ipp

CONFIG = IppConfig(
    ecosystem=EcosystemConfig(partners=500, deals=5000, seed=3),
    encoder="hashing-64",
    bootstrap_resamples=100,
)


@pytest.fixture(scope="module")
def world() -> tuple[schema.Ecosystem, GroundTruth]:
    return generate_ecosystem(CONFIG.ecosystem)


@pytest.fixture(scope="module")
def fitted(world: tuple[schema.Ecosystem, GroundTruth]) -> IppFit:
    ecosystem, truth = world
    return fit_ipp(ecosystem, HashingEncoder(64), CONFIG, truth)


def test_kaplan_meier_median_handles_censoring() -> None:
    assert kaplan_meier_median(np.array([1.0, 2.0, 3.0, 4.0]), np.array([True] * 4)) == 2.0
    # The censored 2 leaves the risk set: survival 0.75 after 1, 0.375 after 3.
    assert kaplan_meier_median(np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, False, True, True])) == 3.0
    assert np.isnan(kaplan_meier_median(np.array([5.0, 6.0, 7.0]), np.array([True, False, False])))


def test_held_out_partners_are_the_latest_signed_and_never_references(
    world: tuple[schema.Ecosystem, GroundTruth], fitted: IppFit
) -> None:
    ecosystem, _ = world
    joined = ecosystem.partners.set_index(schema.PARTNER_ID)[schema.JOINED_AT]
    references = set(fitted.model.reference.partner_ids.tolist())
    held_out = set(fitted.held_out[schema.PARTNER_ID])
    assert held_out and not held_out & references
    assert joined[list(held_out)].min() >= joined[list(references)].max()


def test_model_ranks_unseen_partners_by_quality_better_than_the_text_centroid(fitted: IppFit) -> None:
    metrics = fitted.metrics
    assert set(metrics) >= {"model", "centroid_similarity", "attribute_rubric", "model_minus_attribute_rubric"}
    assert metrics["model"]["latent_spearman"] > 0.5
    assert metrics["model"]["latent_spearman"] > metrics["centroid_similarity"]["latent_spearman"]
    low, high = metrics["model"]["latent_spearman_low"], metrics["model"]["latent_spearman_high"]
    assert low <= metrics["model"]["latent_spearman"] <= high
    rows = metrics["rows"]
    assert rows["train"] + rows["early_stopping"] + rows["test"] <= rows["partners"]


def test_scores_carry_evidence_reasons_and_white_space(
    world: tuple[schema.Ecosystem, GroundTruth], fitted: IppFit
) -> None:
    prospects = partners_as_prospects(fitted.held_out)[:20]
    scores = score_in_batches(fitted.model, prospects, HashingEncoder(64))
    assert [score.prospect_id for score in scores] == [prospect.prospect_id for prospect in prospects]
    for score, prospect in zip(scores, prospects, strict=True):
        assert 0.0 <= score.fit_score <= 100.0 and 0.0 <= score.percentile <= 100.0
        similarities = [item.similarity for item in score.nearest_top_performers]
        assert 0 < len(similarities) <= 3 and similarities == sorted(similarities, reverse=True)
        assert all(reason.contribution > 0 for reason in score.raises)
        assert all(reason.contribution < 0 for reason in score.lowers)
        assert all(cell.product in prospect.products and cell.region in prospect.regions for cell in score.white_space)
    # A better expected win rate never has a lower percentile.
    order = np.argsort([score.fit_score for score in scores])
    assert np.all(np.diff([scores[i].percentile for i in order]) >= 0)


def test_save_load_round_trip_scores_the_same(fitted: IppFit, tmp_path: Path) -> None:
    prospects = partners_as_prospects(fitted.held_out)[:10]
    vectors = HashingEncoder(64).encode([prospect.profile_text for prospect in prospects])
    loaded = IppModel.load(fitted.model.save(tmp_path / "ipp"))
    assert loaded.score(prospects, vectors) == fitted.model.score(prospects, vectors)
    assert not list((tmp_path / "ipp").glob("*.pkl"))


def test_a_model_refuses_another_encoder_and_a_non_model_directory(fitted: IppFit, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hashing-64"):
        score_in_batches(fitted.model, partners_as_prospects(fitted.held_out)[:1], HashingEncoder(32))
    with pytest.raises(ValueError, match="not an IPP model"):
        IppModel.load(tmp_path)


def test_train_registers_a_champion_then_compares_on_the_same_partners(
    world: tuple[schema.Ecosystem, GroundTruth], isolated_paths: Path
) -> None:
    ecosystem, truth = world
    paths = Paths.from_environment()
    config = replace(CONFIG, bootstrap_resamples=20)
    first = train_ipp(config, paths, ecosystem, truth)
    assert (first.version.version, first.alias) == ("1", CHAMPION)
    # No split can be made: constant predictions, an undefined Spearman, never promoted.
    worse = train_ipp(replace(config, min_child_samples=100_000), paths, ecosystem, truth)
    assert worse.alias == CHALLENGER and worse.metrics["promotion"]["promoted"] is False
    model, version = load_champion(paths)
    assert version.version == "1" and model.encoder == "hashing-64"
