"""Fitting and evaluation of the sentiment model (`models.sentiment`), with VADER as the baseline.

Recipe (every share is of distinct texts, assigned by `features.sentiment_data.held_out`):
1. Each text gets two views: its sentence embedding and hashed TF-IDF n-grams (idf from fit rows).
2. Per head, one logistic regression per view is fit on the fit rows, each corpus carrying the same
   total weight (saga solver: on PhraseBank's 2^16-column TF-IDF lbfgs took 39 s, saga 1 s, for the
   same macro-F1).
3. On the calibration rows, never fitted on: the blend of the two views' logits is chosen (sentiment
   by macro-F1, frustration by average precision), then the temperature (sentiment) and the Platt map
   (frustration) are fitted by log-loss.
4. `train_sentiment` also holds out validation rows (promotion by macro-F1 against the champion on the
   same rows) and reports test parts that nothing was fitted or chosen on: PhraseBank sentences held
   out by text, GoEmotions' official dev split.

VADER (lexicon rules) labels a text by its compound score with the thresholds its authors recommend
(>= 0.05 positive, <= -0.05 negative) and its `neg` share serves as its frustration score.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression

from features.embed import Encoder, make_encoder
from features.progress import SILENT, Progress
from features.sentiment_data import (
    SENTIMENT_CLASSES,
    SentimentCorpus,
    held_out,
    read_corpus,
    read_goemotions,
    read_phrasebank,
)
from models.calibration import fit_calibrator
from models.registry import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    REGISTERED_SENTIMENT_MODEL,
    Paths,
    RegisteredVersion,
    local_bundle,
    version_by_alias,
)
from models.sentiment import (
    FrustrationHead,
    HashedTfidf,
    LinearHead,
    SentimentHeads,
    SentimentModel,
    hashed_term_counts,
    softmax,
)
from training import tracking
from training.config import SentimentConfig
from training.evaluate import average_precision, binary_metrics, class_metrics, multiclass_calibration_metrics

VADER_POSITIVE = 0.05  # compound score thresholds recommended by VADER's authors
VADER_NEGATIVE = -0.05
GOEMOTIONS_TRAIN_FILE = "train.tsv"
GOEMOTIONS_TEST_FILE = "dev.tsv"  # the official dev split; the official test split is not in shared/data
PROMOTION_METRIC = "macro_f1"  # higher is better


@dataclass(frozen=True)
class Views:
    """Texts as the heads see them: (n, d) float64 embeddings and (n, F) TF-IDF rows."""

    embeddings: np.ndarray
    tfidf: sp.csr_matrix

    @classmethod
    def of(cls, texts: Sequence[str], encoder: Encoder, tfidf: HashedTfidf, progress: Progress = SILENT) -> Views:
        return cls(encoder.encode(list(texts), progress).astype(np.float64), tfidf.transform(tuple(texts)))

    @classmethod
    def stack(cls, parts: Sequence[Views]) -> Views:
        return cls(
            np.vstack([part.embeddings for part in parts]), sp.csr_matrix(sp.vstack([part.tfidf for part in parts]))
        )

    def rows(self, mask: np.ndarray) -> Views:
        return Views(self.embeddings[mask], self.tfidf[np.flatnonzero(mask)])


def fit_tfidf(texts: Sequence[str], config: SentimentConfig) -> HashedTfidf:
    """Smoothed idf over `texts`: 1 + log((1 + docs) / (1 + docs containing the n-gram))."""
    counts = hashed_term_counts(tuple(texts), config.tfidf_features, config.tfidf_ngram_max)
    documents = np.bincount(counts.indices, minlength=config.tfidf_features)
    return HashedTfidf(config.tfidf_features, config.tfidf_ngram_max, 1.0 + np.log((1 + len(texts)) / (1 + documents)))


def _fit_logistic(
    features: np.ndarray | sp.csr_matrix,
    targets: np.ndarray,
    weights: np.ndarray,
    strength: float,
    config: SentimentConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(weights (d, k), bias (k,)) of an L2 logistic regression with (n,) row weights; k = 1 for two
    classes, else one per class."""
    model = LogisticRegression(
        C=strength, solver="saga", max_iter=config.max_iter, tol=config.tolerance, random_state=config.seed
    ).fit(features, targets, sample_weight=weights / weights.mean())  # mean 1: C keeps its meaning
    return np.asarray(model.coef_, dtype=np.float64).T, np.asarray(model.intercept_, dtype=np.float64)


def _fit_head(
    fit: Views,
    fit_targets: np.ndarray,
    fit_weights: np.ndarray,
    calibration: Views,
    calibration_targets: np.ndarray,
    config: SentimentConfig,
    quality: Callable[[np.ndarray, np.ndarray], float],
) -> LinearHead:
    """Both views' regressions on `fit` (rows weighted by `fit_weights`), blended with the weight of
    `config.blend_weights` that gives the highest `quality(logits, targets)` on `calibration` (ties:
    the first weight)."""
    embedding_weights, embedding_bias = _fit_logistic(
        fit.embeddings, fit_targets, fit_weights, config.embedding_c, config
    )
    tfidf_weights, tfidf_bias = _fit_logistic(fit.tfidf, fit_targets, fit_weights, config.tfidf_c, config)
    heads = [
        LinearHead(embedding_weights, embedding_bias, tfidf_weights, tfidf_bias, blend)
        for blend in config.blend_weights
    ]
    scores = [quality(head.logits(calibration.embeddings, calibration.tfidf), calibration_targets) for head in heads]
    return heads[int(np.argmax(scores))]


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T > 0 that minimises the log-loss of softmax(logits / T) on (n, k) logits and (n,) targets."""
    rows = np.arange(len(targets))

    def loss(log_temperature: float) -> float:
        probabilities = softmax(logits, float(np.exp(log_temperature)))
        return float(-np.log(np.maximum(probabilities[rows, targets], 1e-12)).mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-4.0, 4.0), method="bounded").x))


def _macro_f1_of_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    return class_metrics(targets, logits.argmax(axis=1), SENTIMENT_CLASSES)["macro_f1"]


def fit_sentiment_head(
    fit: Views,
    fit_labels: np.ndarray,
    fit_weights: np.ndarray,
    calibration: Views,
    calibration_labels: np.ndarray,
    config: SentimentConfig,
) -> tuple[LinearHead, float]:
    """(head, temperature): three-class logits blended for macro-F1, temperature for log-loss, on `calibration`."""
    head = _fit_head(fit, fit_labels, fit_weights, calibration, calibration_labels, config, _macro_f1_of_logits)
    return head, fit_temperature(head.logits(calibration.embeddings, calibration.tfidf), calibration_labels)


def fit_frustration_head(
    fit: Views,
    fit_labels: np.ndarray,
    fit_weights: np.ndarray,
    calibration: Views,
    calibration_labels: np.ndarray,
    config: SentimentConfig,
) -> FrustrationHead:
    """One logit blended for average precision, then Platt-scaled, on `calibration`; labels (n,) 0/1."""
    head = _fit_head(
        fit,
        fit_labels,
        fit_weights,
        calibration,
        calibration_labels,
        config,
        lambda logits, targets: average_precision(targets, logits[:, 0]),
    )
    logits = head.logits(calibration.embeddings, calibration.tfidf)[:, 0]
    return FrustrationHead(head, fit_calibrator("platt", logits, calibration_labels))


def vader_scores(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """VADER's (n,) compound scores in [-1, 1] and (n,) `neg` shares in [0, 1]."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    scores = [analyzer.polarity_scores(text) for text in texts]
    return np.array([score["compound"] for score in scores]), np.array([score["neg"] for score in scores])


def vader_labels(compound: np.ndarray) -> np.ndarray:
    """(n,) SENTIMENT_CLASSES indexes from VADER compound scores by the recommended thresholds."""
    negative, neutral, positive = (SENTIMENT_CLASSES.index(name) for name in ("negative", "neutral", "positive"))
    return np.where(compound >= VADER_POSITIVE, positive, np.where(compound <= VADER_NEGATIVE, negative, neutral))


def compare_on(corpus: SentimentCorpus, probabilities: np.ndarray, frustration: np.ndarray | None) -> dict[str, Any]:
    """Metrics of the model's (n, 3) probabilities and (n,) frustration scores and of VADER on `corpus`.

    Keyed "model" and "vader": accuracy, macro_f1, f1_<class>, rows (the model also log_loss and ece);
    when the corpus has frustration labels and `frustration` is given, also "frustration": roc_auc,
    average_precision, log_loss, ece (VADER's score is its neg share: ranking metrics are the fair ones).
    """
    compound, negativity = vader_scores(corpus.texts)
    results: dict[str, Any] = {
        "model": class_metrics(corpus.labels, probabilities.argmax(axis=1), SENTIMENT_CLASSES)
        | multiclass_calibration_metrics(corpus.labels, probabilities),
        "vader": class_metrics(corpus.labels, vader_labels(compound), SENTIMENT_CLASSES),
    }
    if corpus.frustrated is not None and frustration is not None:
        for system, score in (("model", frustration), ("vader", negativity)):
            metrics = binary_metrics(corpus.frustrated, score)
            results[system]["frustration"] = metrics | {
                "average_precision": average_precision(corpus.frustrated, score)
            }
    return results


def _split(corpus: SentimentCorpus, share: float, salt: str) -> tuple[SentimentCorpus, SentimentCorpus]:
    """(rest, held-out part) of `corpus` by `held_out(texts, share, salt)`."""
    rows = held_out(corpus.texts, share, salt)
    return corpus.subset(~rows), corpus.subset(rows)


NO_FRUSTRATION_LABEL = -1


def _frustration_targets(corpus: SentimentCorpus) -> np.ndarray:
    """(n,) int: 1 frustrated, 0 not, NO_FRUSTRATION_LABEL where the corpus has no emotion labels."""
    if corpus.frustrated is None:
        return np.full(len(corpus), NO_FRUSTRATION_LABEL, dtype=np.int64)
    return corpus.frustrated.astype(np.int64)


def _source_weights(sizes: Sequence[int], balance: bool) -> np.ndarray:
    """(sum(sizes),) row weights, corpus after corpus: with `balance`, every corpus carries the same
    total weight (a small corpus is not drowned by a large one), else every row weighs 1."""
    if not balance:
        return np.ones(sum(sizes))
    return np.concatenate([np.full(size, 1.0 / size) for size in sizes])


@dataclass(frozen=True)
class FittedHeads:
    heads: SentimentHeads
    rows: dict[str, int]  # fit and calibration rows per head


def fit_heads(
    corpora: Sequence[SentimentCorpus], encoder: Encoder, config: SentimentConfig, progress: Progress = SILENT
) -> FittedHeads:
    """The sentiment head on all `corpora` pooled; the frustration head on the rows of those with
    emotion labels (if none has any, `heads.frustration` is None). Each corpus gives up
    `config.calibration_share` of its texts as calibration rows; the idf comes from the fit rows."""
    parts = [_split(corpus, config.calibration_share, "calibration") for corpus in corpora]
    fit_texts = [text for fit, _ in parts for text in fit.texts]
    calibration_texts = [text for _, calibration in parts for text in calibration.texts]
    tfidf = fit_tfidf(fit_texts, config)
    progress.step(f"encoding {len(fit_texts) + len(calibration_texts):,} texts with {encoder.name}")
    fit = Views.of(fit_texts, encoder, tfidf, progress)
    calibration = Views.of(calibration_texts, encoder, tfidf, progress)

    progress.step(f"fitting the sentiment head on {len(fit_texts):,} texts")
    fit_labels = np.concatenate([part.labels for part, _ in parts])
    calibration_labels = np.concatenate([part.labels for _, part in parts])
    fit_weights = _source_weights([len(part) for part, _ in parts], config.balance_sources)
    sentiment_head, temperature = fit_sentiment_head(
        fit, fit_labels, fit_weights, calibration, calibration_labels, config
    )
    rows = {"sentiment_fit": len(fit_texts), "sentiment_calibration": len(calibration_texts)}

    fit_frustrated = np.concatenate([_frustration_targets(part) for part, _ in parts])
    calibration_frustrated = np.concatenate([_frustration_targets(part) for _, part in parts])
    frustration = None
    fit_rows, calibration_rows = fit_frustrated != NO_FRUSTRATION_LABEL, calibration_frustrated != NO_FRUSTRATION_LABEL
    if fit_rows.any():
        progress.step(f"fitting the frustration head on {int(fit_rows.sum()):,} texts")
        frustration = fit_frustration_head(
            fit.rows(fit_rows),
            fit_frustrated[fit_rows],
            fit_weights[fit_rows],
            calibration.rows(calibration_rows),
            calibration_frustrated[calibration_rows],
            config,
        )
        rows |= {"frustration_fit": int(fit_rows.sum()), "frustration_calibration": int(calibration_rows.sum())}
    return FittedHeads(SentimentHeads(tfidf, sentiment_head, temperature, frustration), rows)


def _encoder(config: SentimentConfig, cache_dir: Path) -> Encoder:
    return make_encoder(config.encoder, cache_dir, threads=config.threads, batch_size=config.encode_batch_size)


def _blends(heads: SentimentHeads) -> dict[str, float]:
    """The chosen embedding share of each head's logits, for reports."""
    blends = {"sentiment": heads.sentiment.blend}
    if heads.frustration is not None:
        blends["frustration"] = heads.frustration.head.blend
    return blends


def evaluate_sentiment(
    train_path: Path,
    test_path: Path,
    corpus_format: str,
    cache_dir: Path,
    config: SentimentConfig | None = None,
    progress: Progress = SILENT,
    test_format: str | None = None,
) -> dict[str, Any]:
    """Fit on one labelled file, score another (of `test_format`, by default the same format); our
    model beside VADER. Two formats measure transfer across domains (e.g. PhraseBank -> GoEmotions).

    Returns {"model": {accuracy, macro_f1, f1_negative, f1_neutral, f1_positive, rows, log_loss, ece
    [, frustration]}, "vader": {... the same sentiment metrics [, frustration]}, "rows": {train, test,
    fit and calibration rows per head}, "dropped": {"train": {reason: rows}, "test": {...}},
    "blend": {head: embedding share}, "temperature", "encoder", "format": {train, test}}. Frustration
    is scored only when both files have emotion labels (GoEmotions). Raises DataError for a bad file.
    """
    config = config or SentimentConfig()
    test_format = test_format or corpus_format
    train, test = read_corpus(train_path, corpus_format), read_corpus(test_path, test_format)
    encoder = _encoder(config, cache_dir)
    fitted = fit_heads([train], encoder, config, progress)
    progress.step(f"scoring {len(test):,} test texts (model and VADER)")
    probabilities, frustration = fitted.heads.score(encoder.encode(list(test.texts)), test.texts)
    return compare_on(test, probabilities, frustration) | {
        "rows": {"train": len(train), "test": len(test)} | fitted.rows,
        "dropped": {"train": dict(train.dropped), "test": dict(test.dropped)},
        "blend": _blends(fitted.heads),
        "temperature": fitted.heads.temperature,
        "encoder": encoder.name,
        "format": {"train": corpus_format, "test": test_format},
    }


@dataclass(frozen=True)
class SentimentTrainReport:
    version: RegisteredVersion
    alias: str  # champion or challenger
    decision: str  # why, in one sentence
    metrics: dict[str, Any]  # JSON-ready: validation and test metrics of the model and VADER


def _validation_macro_f1(model: SentimentModel, validations: Sequence[SentimentCorpus]) -> float:
    """The mean over the validation corpora of the model's macro-F1: each domain counts the same."""
    scores = [
        class_metrics(corpus.labels, model.predict(corpus.texts).probabilities.argmax(axis=1), SENTIMENT_CLASSES)
        for corpus in validations
    ]
    return float(np.mean([score[PROMOTION_METRIC] for score in scores]))


def _champion_macro_f1(paths: Paths, validations: Sequence[SentimentCorpus], config: SentimentConfig) -> float | None:
    """The current champion's `_validation_macro_f1` on `validations`; None when there is no champion."""
    champion = version_by_alias(paths, REGISTERED_SENTIMENT_MODEL, CHAMPION)
    if champion is None:
        return None
    champion_model = SentimentModel.from_directory(local_bundle(paths, champion), paths.cache_dir, config.threads)
    return _validation_macro_f1(champion_model, validations)


def train_sentiment(
    phrasebank_path: Path,
    goemotions_dir: Path,
    paths: Paths,
    config: SentimentConfig | None = None,
    progress: Progress = SILENT,
) -> SentimentTrainReport:
    """Train on both sets' training parts, evaluate, log to MLflow, register `partnermatch-sentiment`.

    PhraseBank (`phrasebank_path`, any agreement file) loses `config.phrasebank_test_share` of its
    sentences to its test part; GoEmotions trains on `train.tsv` and is tested on `dev.tsv`. From each
    training part `config.validation_share` of the texts is held out for promotion: the new version
    becomes champion when its validation macro-F1, the mean of the two sets' (each domain counts the
    same, as in training), is at least the champion's on the same rows, else challenger. Metrics of
    the model and VADER on every part are logged in one run.
    """
    config = config or SentimentConfig()
    phrasebank_train, phrasebank_test = _split(read_phrasebank(phrasebank_path), config.phrasebank_test_share, "test")
    goemotions_dir = Path(goemotions_dir)
    goemotions_train = read_goemotions(goemotions_dir / GOEMOTIONS_TRAIN_FILE)
    goemotions_test = read_goemotions(goemotions_dir / GOEMOTIONS_TEST_FILE)
    splits = [_split(corpus, config.validation_share, "validation") for corpus in (phrasebank_train, goemotions_train)]
    encoder = _encoder(config, paths.cache_dir)
    fitted = fit_heads([fit for fit, _ in splits], encoder, config, progress)
    model = SentimentModel(config.encoder, encoder, fitted.heads, {"rows": fitted.rows, "config": asdict(config)})

    progress.step("scoring the validation and test parts (model and VADER)")
    parts = {
        "validation_phrasebank": splits[0][1],
        "validation_goemotions": splits[1][1],
        "test_phrasebank": phrasebank_test,
        "test_goemotions": goemotions_test,
    }
    metrics: dict[str, Any] = {}
    for name, corpus in parts.items():
        prediction = model.predict(corpus.texts)
        metrics[name] = compare_on(corpus, prediction.probabilities, prediction.frustration)
    validations = [validation for _, validation in splits]
    new_score = _validation_macro_f1(model, validations)
    champion_score = _champion_macro_f1(paths, validations, config)
    promoted = champion_score is None or new_score >= champion_score
    decision = (
        "no champion yet"
        if champion_score is None
        else f"validation macro-F1 (mean of PhraseBank and GoEmotions) {new_score:.4f} vs champion"
        f" {champion_score:.4f} on the same {sum(len(part) for part in validations):,} texts"
    )
    metrics["validation"] = {"model_macro_f1": new_score, "champion_macro_f1": champion_score}
    metrics["rows"] = fitted.rows | {name: len(corpus) for name, corpus in parts.items()}
    metrics["dropped"] = {
        "goemotions_train": dict(goemotions_train.dropped),
        "goemotions_test": dict(goemotions_test.dropped),
    }
    metrics["blend"] = _blends(fitted.heads)
    metrics["temperature"] = fitted.heads.temperature

    progress.step(f"registering {REGISTERED_SENTIMENT_MODEL}")
    with tracking.start_run(paths, "sentiment") as run, tempfile.TemporaryDirectory() as scratch:
        run.log_params(asdict(config))
        run.log_metrics({key: value for key, value in metrics.items() if key not in ("dropped",)})
        model_dir = model.save(Path(scratch) / BUNDLE_ARTIFACT)
        version = tracking.register_sentiment_model(run, model_dir, REGISTERED_SENTIMENT_MODEL, {"decision": decision})
        alias = tracking.mark_version(
            paths, REGISTERED_SENTIMENT_MODEL, version.version, promoted, decision, metrics["validation"]
        )
    return SentimentTrainReport(version=version, alias=alias, decision=decision, metrics=metrics)
