"""training.sentiment: fitting on tiny labelled texts with the hashing encoder, VADER's thresholds,
evaluation and registration; and (integration) real MiniLM on a real PhraseBank subset beats VADER."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from features.embed import HashingEncoder, make_encoder
from features.sentiment_data import SENTIMENT_CLASSES, SentimentCorpus, held_out, read_phrasebank
from models.registry import CHAMPION, REGISTERED_SENTIMENT_MODEL, Paths, local_bundle, version_by_alias
from models.sentiment import SentimentModel
from tests.conftest import SHARED_DATA, needs_shared_data
from training.config import SentimentConfig
from training.sentiment import compare_on, evaluate_sentiment, fit_heads, fit_temperature, train_sentiment, vader_labels

TINY = SentimentConfig(encoder="hashing-64", tfidf_features=2**12, calibration_share=0.3, validation_share=0.2)
WORDS = {
    "negative": ["terrible", "late", "broken", "angry", "refund"],
    "neutral": ["invoice", "meeting", "attached", "schedule", "agenda"],
    "positive": ["great", "thanks", "excellent", "happy", "won"],
}


def tiny_texts(count: int, seed: int) -> tuple[list[str], list[int]]:
    """`count` texts per class: three words of the class plus a shared filler word."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, name in enumerate(SENTIMENT_CLASSES):
        for index in range(count):
            words = rng.choice(WORDS[name], size=3)
            texts.append(f"{' '.join(words)} the deal {index} {seed}")
            labels.append(label)
    return texts, labels


def tiny_corpus(count: int = 40, seed: int = 0, frustration: bool = True) -> SentimentCorpus:
    texts, labels = tiny_texts(count, seed)
    label_array = np.array(labels)
    frustrated = (label_array == 0) & np.array(["angry" in text or "late" in text for text in texts])
    return SentimentCorpus(Path(f"tiny{seed}.tsv"), tuple(texts), label_array, frustrated if frustration else None)


def write_phrasebank(path: Path, count: int, seed: int) -> Path:
    texts, labels = tiny_texts(count, seed)
    lines = [f"{text}@{SENTIMENT_CLASSES[label]}\n" for text, label in zip(texts, labels, strict=True)]
    path.write_text("".join(lines), encoding="latin-1")
    return path


def write_goemotions(directory: Path, count: int) -> Path:
    """train.tsv and dev.tsv with labels: 0 joy (positive), 1 anger, 2 sadness (negative), 3 neutral."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("joy\nanger\nsadness\nneutral\n")
    (directory / "sentiment_dict.json").write_text(
        json.dumps({"positive": ["joy"], "negative": ["anger", "sadness"], "ambiguous": []})
    )
    for name, seed in (("train.tsv", 1), ("dev.tsv", 2)):
        texts, labels = tiny_texts(count, seed)
        emotion_ids = [
            ("1" if "angry" in text else "2") if label == 0 else ("3" if label == 1 else "0")
            for text, label in zip(texts, labels, strict=True)
        ]
        rows = [f"{text}\t{ids}\tc{k}\n" for k, (text, ids) in enumerate(zip(texts, emotion_ids, strict=True))]
        (directory / name).write_text("".join(rows))
    return directory


def test_fit_heads_learns_tiny_data_with_calibrated_outputs() -> None:
    encoder = HashingEncoder(64)
    fitted = fit_heads([tiny_corpus(seed=0)], encoder, TINY)
    test = tiny_corpus(seed=5)
    probabilities, frustration = fitted.heads.score(encoder.encode(list(test.texts)), test.texts)
    assert (probabilities.argmax(axis=1) == test.labels).mean() > 0.9
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert frustration is not None and ((frustration >= 0) & (frustration <= 1)).all()
    assert test.frustrated is not None
    assert frustration[test.frustrated].mean() > frustration[~test.frustrated].mean() + 0.2
    assert fitted.heads.sentiment.blend in TINY.blend_weights and fitted.heads.temperature > 0
    assert fitted.rows["sentiment_fit"] + fitted.rows["sentiment_calibration"] == len(tiny_corpus())


def test_frustration_head_only_from_corpora_with_emotion_labels() -> None:
    encoder = HashingEncoder(64)
    without = fit_heads([tiny_corpus(frustration=False)], encoder, TINY)
    assert without.heads.frustration is None and "frustration_fit" not in without.rows
    mixed = fit_heads([tiny_corpus(seed=0, frustration=False), tiny_corpus(seed=1)], encoder, TINY)
    assert mixed.heads.frustration is not None
    assert mixed.rows["frustration_fit"] + mixed.rows["frustration_calibration"] == len(tiny_corpus(seed=1))


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(20000, 3))
    scaled = np.exp(logits / 2.5)
    probabilities = scaled / scaled.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in probabilities])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)


def test_vader_thresholds_and_comparison_keys() -> None:
    labels = vader_labels(np.array([0.5, 0.049, 0.0, -0.049, -0.05, 0.05]))
    assert [SENTIMENT_CLASSES[index] for index in labels] == [
        "positive",
        "neutral",
        "neutral",
        "neutral",
        "negative",
        "positive",
    ]
    corpus = tiny_corpus(count=5)
    perfect = np.eye(3)[corpus.labels]
    results = compare_on(corpus, perfect, corpus.frustrated.astype(float) if corpus.frustrated is not None else None)
    assert results["model"]["macro_f1"] == pytest.approx(1.0) and results["model"]["accuracy"] == pytest.approx(1.0)
    assert results["model"]["frustration"]["roc_auc"] == pytest.approx(1.0)
    assert {"accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive", "rows"} <= set(results["vader"])
    assert 0.0 <= results["vader"]["frustration"]["roc_auc"] <= 1.0


def test_evaluate_sentiment_on_csv_files(tmp_path: Path) -> None:
    for name, seed in (("train.csv", 0), ("test.csv", 3)):
        texts, labels = tiny_texts(30, seed)
        rows = "".join(f"{text},{SENTIMENT_CLASSES[label]}\n" for text, label in zip(texts, labels, strict=True))
        (tmp_path / name).write_text("text,label\n" + rows)
    results = evaluate_sentiment(tmp_path / "train.csv", tmp_path / "test.csv", "csv", tmp_path / "cache", TINY)
    json.dumps(results)
    assert results["model"]["macro_f1"] > 0.9 and 0.0 <= results["vader"]["macro_f1"] <= 1.0
    assert results["rows"]["test"] == results["model"]["rows"] == 90
    assert "frustration" not in results["model"]
    assert results["format"] == {"train": "csv", "test": "csv"} and results["encoder"] == "hashing-64"


def test_train_sentiment_registers_and_promotes_by_validation_macro_f1(
    tmp_path: Path, isolated_paths: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_environment()
    phrasebank = write_phrasebank(tmp_path / "Sentences_50Agree.txt", 60, seed=0)
    goemotions = write_goemotions(tmp_path / "goemotions", 60)
    first = train_sentiment(phrasebank, goemotions, paths, TINY)
    assert (first.version.version, first.alias, first.decision) == ("1", CHAMPION, "no champion yet")
    assert first.metrics["test_goemotions"]["model"]["frustration"]["roc_auc"] > 0.5
    assert first.metrics["test_phrasebank"]["model"]["macro_f1"] > 0.8
    json.dumps(first.metrics)

    champion = version_by_alias(paths, REGISTERED_SENTIMENT_MODEL, CHAMPION)
    assert champion is not None
    loaded = SentimentModel.from_directory(local_bundle(paths, champion), paths.cache_dir)
    assert loaded.predict(["great thanks"]).labels == ("positive",)

    weaker = replace(TINY, blend_weights=(0.0,), tfidf_c=1e-4, embedding_c=1e-4)
    second = train_sentiment(phrasebank, goemotions, paths, weaker)
    assert second.version.version == "2" and second.alias == "challenger"
    assert second.metrics["validation"]["model_macro_f1"] < second.metrics["validation"]["champion_macro_f1"]


@pytest.mark.integration
@needs_shared_data
def test_real_minilm_on_real_phrasebank_subset_beats_vader(onnx_cache_dir: Path) -> None:
    corpus = read_phrasebank(SHARED_DATA / "financial-phrasebank" / "Sentences_AllAgree.txt")
    test_rows = held_out(corpus.texts, 0.2, "test")
    train, test = corpus.subset(~test_rows), corpus.subset(test_rows)
    config = SentimentConfig(encode_batch_size=32)
    encoder = make_encoder(config.encoder, onnx_cache_dir, threads=config.threads, batch_size=config.encode_batch_size)
    fitted = fit_heads([train], encoder, config)
    probabilities, _ = fitted.heads.score(encoder.encode(list(test.texts)), test.texts)
    results = compare_on(test, probabilities, None)
    assert results["model"]["macro_f1"] > results["vader"]["macro_f1"] + 0.1
    assert results["model"]["ece"] < 0.1
