"""models.sentiment: the inference half on hand-made weights and the hashing encoder (no fitting)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.embed import HashingEncoder
from features.sentiment_data import SENTIMENT_CLASSES
from models.calibration import Calibrator
from models.sentiment import (
    MANIFEST_FILE,
    FrustrationHead,
    HashedTfidf,
    LinearHead,
    SentimentFormatError,
    SentimentHeads,
    SentimentModel,
    softmax,
)

TEXTS = ["Thanks, great quarter!", "The invoice is attached.", "This is the third delay, unacceptable.", ""]
FEATURES = 2**10


def random_head(rng: np.random.Generator, outputs: int, blend: float) -> LinearHead:
    return LinearHead(
        embedding_weights=rng.normal(size=(16, outputs)),
        embedding_bias=rng.normal(size=outputs),
        tfidf_weights=rng.normal(size=(FEATURES, outputs)),
        tfidf_bias=rng.normal(size=outputs),
        blend=blend,
    )


@pytest.fixture
def model() -> SentimentModel:
    rng = np.random.default_rng(0)
    heads = SentimentHeads(
        tfidf=HashedTfidf(FEATURES, 2, 1.0 + rng.random(FEATURES)),
        sentiment=random_head(rng, 3, blend=0.5),
        temperature=1.7,
        frustration=FrustrationHead(random_head(rng, 1, blend=0.25), Calibrator("platt", slope=1.3, intercept=-0.4)),
    )
    return SentimentModel("hashing-16", HashingEncoder(16), heads, {"rows": {"sentiment_fit": 4}})


def test_probabilities_sum_to_one_and_frustration_is_a_probability(model: SentimentModel) -> None:
    labels, probabilities, frustration = model.predict(TEXTS)
    assert probabilities.shape == (len(TEXTS), 3) and frustration.shape == (len(TEXTS),)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert ((frustration >= 0) & (frustration <= 1)).all()
    assert labels == tuple(SENTIMENT_CLASSES[index] for index in probabilities.argmax(axis=1))


def test_temperature_keeps_the_ranking_and_flattens() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.3, 0.2]])
    sharp, flat = softmax(logits, 0.5), softmax(logits, 4.0)
    np.testing.assert_array_equal(sharp.argmax(axis=1), flat.argmax(axis=1))
    assert (sharp.max(axis=1) > flat.max(axis=1)).all()
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0, 0.0]])), [[1.0, 0.0, 0.0]])  # no overflow


def test_tfidf_rows_are_unit_or_zero() -> None:
    tfidf = HashedTfidf(FEATURES, 2, np.ones(FEATURES)).transform(["alpha beta beta", "", "gamma"])
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, [1.0, 0.0, 1.0])


def test_save_load_round_trip_predicts_the_same(model: SentimentModel, tmp_path: Path) -> None:
    model.save(tmp_path / "model")
    loaded = SentimentModel.load(tmp_path / "model", HashingEncoder(16))
    before, after = model.predict(TEXTS), loaded.predict(TEXTS)
    assert before.labels == after.labels
    np.testing.assert_allclose(before.probabilities, after.probabilities)
    np.testing.assert_allclose(before.frustration, after.frustration)
    assert loaded.encoder_name == "hashing-16" and loaded.summary == model.summary
    same = SentimentModel.from_directory(tmp_path / "model", tmp_path / "cache")
    np.testing.assert_allclose(same.predict(TEXTS).probabilities, before.probabilities)


def test_load_refuses_another_encoder_format_or_directory(model: SentimentModel, tmp_path: Path) -> None:
    directory = model.save(tmp_path / "model")
    with pytest.raises(SentimentFormatError, match="trained on encoder 'hashing-16', not 'hashing-32'"):
        SentimentModel.load(directory, HashingEncoder(32))
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(SentimentFormatError, match="format 99; this code reads format 1"):
        SentimentModel.load(directory, HashingEncoder(16))
    with pytest.raises(SentimentFormatError, match="is missing"):
        SentimentModel.load(tmp_path / "nothing", HashingEncoder(16))


def test_a_model_needs_a_frustration_head(model: SentimentModel) -> None:
    heads = SentimentHeads(model.heads.tfidf, model.heads.sentiment, 1.0, None)
    probabilities, frustration = heads.score(model.encoder.encode(TEXTS), TEXTS)
    assert frustration is None and probabilities.shape == (len(TEXTS), 3)
    with pytest.raises(ValueError, match="frustration head"):
        SentimentModel("hashing-16", model.encoder, heads)
