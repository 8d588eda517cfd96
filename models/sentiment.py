"""The inference half of the sentiment model: calibrated negative / neutral / positive probabilities and
a frustration score for business messages. `training.sentiment` fits it.

Two linear heads read the same two views of a text:
- its sentence embedding (`features.embed`, the encoder named in the manifest: MiniLM ONNX int8);
- hashed TF-IDF word uni- and bigrams (`HashedTfidf`: stateless hashing, so only the idf is learned).
Each head's logits are `blend * embedding logits + (1 - blend) * tfidf logits`, with `blend` in
[0, 1] chosen on out-of-fold predictions (1 = embedding only, 0 = TF-IDF only).

Calibration. Sentiment: temperature scaling, probabilities = softmax(logits / temperature), one
positive scalar fitted on out-of-fold logits by log-loss (Guo et al., 2017). It keeps the arg-max, so
labels do not depend on it, and the three probabilities sum to 1. `models.calibration` maps one score
to one probability and so is not enough for three classes. Frustration: one logit, Platt-scaled with
`models.calibration.Calibrator`.

On disk (no pickles): `sentiment_manifest.json` (format version, encoder, classes, TF-IDF settings,
blend weights, temperature, frustration calibrator, training summary) and `sentiment_weights.npz`
(the idf and the heads' coefficients, read with allow_pickle=False). A loader refuses a format it does
not know, naming both versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from features.embed import Encoder, make_encoder
from features.sentiment_data import SENTIMENT_CLASSES
from models.calibration import Calibrator

FORMAT_VERSION = 1
MANIFEST_FILE = "sentiment_manifest.json"
WEIGHTS_FILE = "sentiment_weights.npz"
HEAD_ARRAYS = ("embedding_weights", "embedding_bias", "tfidf_weights", "tfidf_bias")
SENTIMENT_HEAD = "sentiment"
FRUSTRATION_HEAD = "frustration"


class SentimentFormatError(ValueError):
    """A directory that is not a sentiment model this code can read."""


def hashed_term_counts(texts: list[str] | tuple[str, ...], n_features: int, ngram_max: int) -> sp.csr_matrix:
    """(n, n_features) sparse float64 counts of lower-cased word 1..ngram_max-grams, hashed (no vocabulary)."""
    vectorizer = HashingVectorizer(
        n_features=n_features, ngram_range=(1, ngram_max), alternate_sign=False, norm=None, dtype=np.float64
    )
    return sp.csr_matrix(vectorizer.transform(list(texts)))


@dataclass(frozen=True)
class HashedTfidf:
    """Sublinear TF-IDF over hashed n-grams: (1 + log count) x idf, rows L2-normalised (an empty text: zeros).

    `idf` is (n_features,) float64, >= 1 (smoothed: 1 + log((1 + docs) / (1 + docs with the feature))).
    """

    n_features: int
    ngram_max: int
    idf: np.ndarray

    def transform(self, texts: list[str] | tuple[str, ...]) -> sp.csr_matrix:
        """(n, n_features) sparse float64, unit rows."""
        counts = hashed_term_counts(texts, self.n_features, self.ngram_max)
        counts.data = 1.0 + np.log(counts.data)
        return sp.csr_matrix(normalize(counts.multiply(self.idf.reshape(1, -1)).tocsr()))


@dataclass(frozen=True)
class LinearHead:
    """Blended linear logits over the two views of a text; k = 3 for sentiment, 1 for frustration.

    embedding_weights (d, k), tfidf_weights (n_features, k), biases (k,), all float64; blend in [0, 1].
    """

    embedding_weights: np.ndarray
    embedding_bias: np.ndarray
    tfidf_weights: np.ndarray
    tfidf_bias: np.ndarray
    blend: float

    def logits(self, embeddings: np.ndarray, tfidf: sp.csr_matrix) -> np.ndarray:
        """(n, d) embeddings and (n, n_features) TF-IDF rows -> (n, k) float64 logits."""
        embedding_logits = embeddings @ self.embedding_weights + self.embedding_bias
        tfidf_logits = np.asarray(tfidf @ self.tfidf_weights) + self.tfidf_bias
        return np.asarray(self.blend * embedding_logits + (1.0 - self.blend) * tfidf_logits, dtype=np.float64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(n, k) logits -> (n, k) probabilities of softmax(logits / temperature); rows sum to 1."""
    scaled = logits / temperature
    exponentials = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return np.asarray(exponentials / exponentials.sum(axis=1, keepdims=True))


class SentimentPrediction(NamedTuple):
    labels: tuple[str, ...]  # (n,) the most probable class of SENTIMENT_CLASSES
    probabilities: np.ndarray  # (n, 3) float64, columns in SENTIMENT_CLASSES order, rows sum to 1
    frustration: np.ndarray  # (n,) float64 in [0, 1]: probability that the text shows frustration


@dataclass(frozen=True)
class FrustrationHead:
    head: LinearHead  # one logit
    calibrator: Calibrator  # logit -> probability in [0, 1]


@dataclass(frozen=True)
class SentimentHeads:
    """Everything learned but the encoder. `frustration` is None only for heads fitted without emotion
    labels (an evaluation on PhraseBank or CSV alone); a `SentimentModel` always has it."""

    tfidf: HashedTfidf
    sentiment: LinearHead
    temperature: float  # > 0
    frustration: FrustrationHead | None

    def score(self, embeddings: np.ndarray, texts: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, d) embeddings of n `texts` -> (n, 3) calibrated probabilities and (n,) frustration in [0, 1]."""
        tfidf = self.tfidf.transform(texts)
        probabilities = softmax(self.sentiment.logits(embeddings.astype(np.float64), tfidf), self.temperature)
        if self.frustration is None:
            return probabilities, None
        logits = self.frustration.head.logits(embeddings.astype(np.float64), tfidf)[:, 0]
        return probabilities, np.clip(self.frustration.calibrator.predict(logits), 0.0, 1.0)


@dataclass(frozen=True)
class SentimentModel:
    """Sentiment and frustration of texts. `encoder_name` is the `features.embed.make_encoder` name of
    the encoder the heads were fitted with, `encoder` an instance of it (checked on load)."""

    encoder_name: str
    encoder: Encoder
    heads: SentimentHeads
    summary: dict[str, Any] = field(default_factory=dict)  # what it was trained on (JSON-ready)

    def __post_init__(self) -> None:
        if self.heads.frustration is None:
            raise ValueError("a sentiment model needs a frustration head (fit with emotion labels)")

    def predict(self, texts: list[str] | tuple[str, ...]) -> SentimentPrediction:
        """Labels, (n, 3) calibrated class probabilities and (n,) frustration scores for n texts."""
        probabilities, frustration = self.heads.score(self.encoder.encode(list(texts)), texts)
        assert frustration is not None  # checked in __post_init__
        labels = tuple(SENTIMENT_CLASSES[index] for index in probabilities.argmax(axis=1))
        return SentimentPrediction(labels, probabilities, frustration)

    def save(self, directory: Path) -> Path:
        """Write the weights and then the manifest (its presence marks a complete model); returns `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        frustration = self.heads.frustration
        assert frustration is not None
        arrays: dict[str, Any] = {"idf": self.heads.tfidf.idf}
        for name, head in ((SENTIMENT_HEAD, self.heads.sentiment), (FRUSTRATION_HEAD, frustration.head)):
            arrays.update({f"{name}_{array}": getattr(head, array) for array in HEAD_ARRAYS})
        np.savez_compressed(directory / WEIGHTS_FILE, **arrays)
        manifest = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder_name,
            "encoder_identity": self.encoder.name,  # what `Encoder.name` reports, to check an encoder on load
            "classes": list(SENTIMENT_CLASSES),
            "tfidf": {"n_features": self.heads.tfidf.n_features, "ngram_max": self.heads.tfidf.ngram_max},
            "blend": {SENTIMENT_HEAD: self.heads.sentiment.blend, FRUSTRATION_HEAD: frustration.head.blend},
            "temperature": self.heads.temperature,
            "frustration_calibrator": frustration.calibrator.to_dict(),
            "summary": self.summary,
        }
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path, encoder: Encoder) -> SentimentModel:
        """Read a saved model that will embed with `encoder` (e.g. an uncached one for a benchmark).

        Raises SentimentFormatError for a missing manifest, an unknown format, other classes, or an
        `encoder` that is not the one the model was trained with."""
        manifest = read_manifest(directory)
        if encoder.name != manifest["encoder_identity"]:
            raise SentimentFormatError(
                f"{directory} was trained on encoder {manifest['encoder_identity']!r}, not {encoder.name!r}"
            )
        with np.load(Path(directory) / WEIGHTS_FILE, allow_pickle=False) as weights:
            arrays = {name: weights[name] for name in weights.files}

        def head(name: str) -> LinearHead:
            values = {array: arrays[f"{name}_{array}"] for array in HEAD_ARRAYS}
            return LinearHead(**values, blend=float(manifest["blend"][name]))

        tfidf = HashedTfidf(
            n_features=int(manifest["tfidf"]["n_features"]),
            ngram_max=int(manifest["tfidf"]["ngram_max"]),
            idf=arrays["idf"],
        )
        frustration = FrustrationHead(head(FRUSTRATION_HEAD), Calibrator.from_dict(manifest["frustration_calibrator"]))
        heads = SentimentHeads(tfidf, head(SENTIMENT_HEAD), float(manifest["temperature"]), frustration)
        return cls(encoder_name=manifest["encoder"], encoder=encoder, heads=heads, summary=dict(manifest["summary"]))

    @classmethod
    def from_directory(cls, directory: Path, cache_dir: Path, threads: int = 1) -> SentimentModel:
        """Read a saved model with the encoder it names, built by `make_encoder` (cached under `cache_dir`)."""
        return cls.load(directory, make_encoder(read_manifest(directory)["encoder"], cache_dir, threads=threads))


def read_manifest(directory: Path) -> dict[str, Any]:
    """The saved model's manifest (a dict as written by `SentimentModel.save`).

    Raises SentimentFormatError for a missing manifest, another format version or other classes.
    """
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise SentimentFormatError(f"{directory} is not a sentiment model: {MANIFEST_FILE} is missing")
    manifest: dict[str, Any] = json.loads(path.read_text())
    found = manifest.get("format_version")
    if found != FORMAT_VERSION:
        raise SentimentFormatError(
            f"{directory} holds sentiment model format {found}; this code reads format {FORMAT_VERSION}: "
            "retrain with `partnermatch train-sentiment`"
        )
    if tuple(manifest.get("classes", ())) != SENTIMENT_CLASSES:
        raise SentimentFormatError(f"{directory} predicts classes {manifest.get('classes')}, not {SENTIMENT_CLASSES}")
    return manifest
