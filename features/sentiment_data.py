"""Labelled texts for the sentiment model: readers for Financial PhraseBank, GoEmotions and a plain CSV.

Every reader returns a `SentimentCorpus`: texts with a label in SENTIMENT_CLASSES and, where the set
has emotion labels (GoEmotions), whether the text shows frustration (anger, annoyance or
disappointment). Bad input raises `features.io.DataError` naming the file, the line and the reason.

- PhraseBank `Sentences_*Agree.txt`: latin-1, one `sentence@label` per line. The agreement files are
  nested (AllAgree is in 75Agree is in 66Agree is in 50Agree), so train/test are split by sentence
  text (`held_out`), which puts a sentence on the same side whichever file it is read from.
- GoEmotions `train.tsv` / `dev.tsv`: `text \\t label ids \\t comment id`, with `labels.txt` and
  `sentiment_dict.json` beside them. The 28 labels map to three classes with the set's own
  sentiment_dict.json; rows with an ambiguous emotion (surprise, confusion, ...) or with emotions of
  opposite polarity are left out and counted in `dropped`.
- CSV: a header with `text,label`, label one of SENTIMENT_CLASSES (case and spaces ignored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import io

SENTIMENT_CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")  # column order of probabilities
FRUSTRATION_EMOTIONS: tuple[str, ...] = ("anger", "annoyance", "disappointment")
CORPUS_FORMATS: tuple[str, ...] = ("phrasebank", "goemotions", "csv")

PHRASEBANK_ENCODING = "latin-1"
PHRASEBANK_SEPARATOR = "@"
GOEMOTIONS_LABELS_FILE = "labels.txt"
GOEMOTIONS_SENTIMENT_FILE = "sentiment_dict.json"
GOEMOTIONS_NEUTRAL = "neutral"  # a label of its own, not in sentiment_dict.json
GOEMOTIONS_AMBIGUOUS = "ambiguous"  # the sentiment_dict.json group that has no polarity
GOEMOTIONS_FIELDS = 3
DROPPED_AMBIGUOUS = "ambiguous"  # a row with an emotion of no polarity
DROPPED_MIXED = "mixed"  # a row whose emotions have different polarities (e.g. joy + sadness)
CSV_TEXT = "text"
CSV_LABEL = "label"
TRAIN_FILE = "train.txt"  # PhraseBank split outputs keep the PhraseBank format
TEST_FILE = "test.txt"


@dataclass(frozen=True)
class SentimentCorpus:
    """Labelled texts from one file; arrays are aligned with `texts`.

    `labels`: (n,) int64 indexes into SENTIMENT_CLASSES. `frustrated`: (n,) bool, None when the file
    has no emotion labels. `dropped`: rows left out by reason (e.g. "ambiguous"), 0 counts omitted.
    """

    source: Path
    texts: tuple[str, ...]
    labels: np.ndarray
    frustrated: np.ndarray | None = None
    dropped: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, rows: np.ndarray) -> SentimentCorpus:
        """The corpus restricted to `rows` (a boolean mask or integer indexes), same source and drops."""
        indexes = np.flatnonzero(rows) if rows.dtype == bool else rows
        return SentimentCorpus(
            source=self.source,
            texts=tuple(self.texts[index] for index in indexes),
            labels=self.labels[indexes],
            frustrated=None if self.frustrated is None else self.frustrated[indexes],
            dropped=self.dropped,
        )

    def class_counts(self) -> dict[str, int]:
        """Rows per class, every class named."""
        counts = np.bincount(self.labels, minlength=len(SENTIMENT_CLASSES))
        return {name: int(count) for name, count in zip(SENTIMENT_CLASSES, counts, strict=True)}


def held_out(texts: Sequence[str], fraction: float, salt: str) -> np.ndarray:
    """(n,) bool: True for the texts in the held-out part, about `fraction` of the distinct texts.

    Decided by a hash of (salt, text) alone, so equal texts always fall on the same side, the split
    is the same in every process and on every nested PhraseBank file, and a new `salt` draws an
    independent split (e.g. "test" for the test part, "validation" for a validation part).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    threshold = int(fraction * 2**64)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{salt}\0{text}".encode(), digest_size=8).digest(), "little") < threshold
            for text in texts
        ],
        dtype=bool,
    )


def _class_index(label: str) -> int | None:
    normalised = label.strip().lower()
    return SENTIMENT_CLASSES.index(normalised) if normalised in SENTIMENT_CLASSES else None


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for each line of an existing text file."""
    if not path.is_file():
        raise io.DataError(path, "file does not exist" if not path.exists() else "not a regular file")
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise io.DataError(path, f"is not {encoding} text: {error}") from error
    yield from enumerate(text.splitlines(), start=1)


def _require_rows(path: Path, texts: Sequence[str], what: str) -> None:
    if not texts:
        raise io.DataError(path, f"no {what} found")


def read_phrasebank(path: Path) -> SentimentCorpus:
    """A PhraseBank `Sentences_*Agree.txt` file (or a split of one): one `sentence@label` per line.

    Splits at the last "@". Blank lines and lines without "@" are skipped and counted in
    `dropped["no_label"]` (the AllAgree file of the original release has a stray line `1`, which
    the data's SOURCE.md says to skip). Raises DataError at the first line with an unknown label or
    an empty sentence, and when the file holds no labelled sentence.
    """
    path = Path(path)
    texts: list[str] = []
    labels: list[int] = []
    unlabelled = 0
    for number, line in _lines(path, PHRASEBANK_ENCODING):
        if PHRASEBANK_SEPARATOR not in line:
            unlabelled += 1
            continue
        sentence, label = line.rsplit(PHRASEBANK_SEPARATOR, 1)
        index = _class_index(label)
        if index is None:
            raise io.DataError(path, f"label {label!r} is not one of {', '.join(SENTIMENT_CLASSES)}", row=number)
        if not sentence.strip():
            raise io.DataError(path, "empty sentence before the '@'", row=number)
        texts.append(sentence.strip())
        labels.append(index)
    _require_rows(path, texts, "`sentence@label` line")
    return SentimentCorpus(
        source=path,
        texts=tuple(texts),
        labels=np.array(labels, dtype=np.int64),
        dropped={"no_label": unlabelled} if unlabelled else {},
    )


def split_phrasebank(source: Path, out_dir: Path, test_fraction: float = 0.2) -> tuple[Path, Path]:
    """Split a PhraseBank file by sentence text into `out_dir/train.txt` and `out_dir/test.txt`.

    Lines keep the PhraseBank format (latin-1 `sentence@label`); a sentence is in the test file when
    `held_out(sentence, test_fraction, "test")`, so splitting any of the nested agreement files puts
    each sentence on the same side. Returns (train path, test path).
    """
    corpus = read_phrasebank(source)
    test_rows = held_out(corpus.texts, test_fraction, "test")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in ((TRAIN_FILE, ~test_rows), (TEST_FILE, test_rows)):
        part = corpus.subset(rows)
        lines = [
            f"{text}{PHRASEBANK_SEPARATOR}{SENTIMENT_CLASSES[label]}\n"
            for text, label in zip(part.texts, part.labels, strict=True)
        ]
        (out_dir / name).write_text("".join(lines), encoding=PHRASEBANK_ENCODING)
        paths.append(out_dir / name)
    return paths[0], paths[1]


def _goemotions_vocabulary(directory: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """(label names by id, emotion -> "positive" | "negative" | "ambiguous" | "neutral") from the set's files."""
    labels_path = directory / GOEMOTIONS_LABELS_FILE
    names = tuple(line.strip() for _, line in _lines(labels_path, "utf-8") if line.strip())
    _require_rows(labels_path, names, "label name")
    sentiment_path = directory / GOEMOTIONS_SENTIMENT_FILE
    if not sentiment_path.is_file():
        raise io.DataError(sentiment_path, "file does not exist (it maps the emotions to sentiment)")
    try:
        groups = json.loads(sentiment_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise io.DataError(sentiment_path, f"is not JSON: {error}", row=error.lineno) from error
    polarity = {GOEMOTIONS_NEUTRAL: GOEMOTIONS_NEUTRAL}
    for group in ("positive", "negative", GOEMOTIONS_AMBIGUOUS):
        if not isinstance(groups.get(group), list):
            raise io.DataError(sentiment_path, f"needs a list of emotions under {group!r}")
        polarity.update({emotion: group for emotion in groups[group]})
    unmapped = [name for name in names if name not in polarity]
    if unmapped:
        raise io.DataError(
            sentiment_path, f"no sentiment for the labels {', '.join(unmapped)} of {GOEMOTIONS_LABELS_FILE}"
        )
    return names, polarity


def goemotions_class(emotions: Sequence[str], polarity: Mapping[str, str]) -> int | str:
    """The SENTIMENT_CLASSES index of a row's emotions, or the reason it has none.

    One polarity across all emotions ("neutral" counts as one) gives its class; an ambiguous emotion
    gives DROPPED_AMBIGUOUS; emotions of different polarities give DROPPED_MIXED.
    """
    polarities = {polarity[emotion] for emotion in emotions}
    if GOEMOTIONS_AMBIGUOUS in polarities:
        return DROPPED_AMBIGUOUS
    if len(polarities) > 1:
        return DROPPED_MIXED
    return SENTIMENT_CLASSES.index(polarities.pop())


def read_goemotions(path: Path) -> SentimentCorpus:
    """A GoEmotions TSV (`train.tsv`, `dev.tsv`) with `labels.txt` and `sentiment_dict.json` beside it.

    Each line: text, comma-separated label ids, comment id, separated by tabs. Rows map to three
    classes by `goemotions_class`; the others are counted in `dropped`. `frustrated` is True where a
    row has one of FRUSTRATION_EMOTIONS. Raises DataError at the first line with a wrong field count,
    an empty text or a label id that is not an integer in range, or for a missing or bad vocabulary file.
    """
    path = Path(path)
    names, polarity = _goemotions_vocabulary(path.parent)
    texts: list[str] = []
    labels: list[int] = []
    frustrated: list[bool] = []
    dropped = {DROPPED_AMBIGUOUS: 0, DROPPED_MIXED: 0}
    for number, line in _lines(path, "utf-8"):
        fields = line.split("\t")
        if len(fields) != GOEMOTIONS_FIELDS:
            raise io.DataError(
                path, f"expected {GOEMOTIONS_FIELDS} tab-separated fields, found {len(fields)}", row=number
            )
        text, ids, _ = fields
        if not text.strip():
            raise io.DataError(path, "empty text", row=number)
        emotions = []
        for label_id in ids.split(","):
            if not label_id.strip().isdigit() or int(label_id) >= len(names):
                reason = f"label id {label_id!r} is not an integer in 0..{len(names) - 1} ({GOEMOTIONS_LABELS_FILE})"
                raise io.DataError(path, reason, row=number)
            emotions.append(names[int(label_id)])
        outcome = goemotions_class(emotions, polarity)
        if isinstance(outcome, str):
            dropped[outcome] += 1
            continue
        texts.append(text.strip())
        labels.append(outcome)
        frustrated.append(any(emotion in FRUSTRATION_EMOTIONS for emotion in emotions))
    _require_rows(path, texts, "row with a positive, negative or neutral label")
    return SentimentCorpus(
        source=path,
        texts=tuple(texts),
        labels=np.array(labels, dtype=np.int64),
        frustrated=np.array(frustrated, dtype=bool),
        dropped={reason: count for reason, count in dropped.items() if count},
    )


def read_sentiment_csv(path: Path) -> SentimentCorpus:
    """A CSV with a header and the columns `text` and `label` (one of SENTIMENT_CLASSES; other columns
    are ignored). Raises DataError for a missing file or column, an empty text or an unknown label."""
    path = Path(path)
    frame = io.read_csv_checked(path, [CSV_TEXT, CSV_LABEL], dtype=str, keep_default_na=False)
    texts, labels = frame[CSV_TEXT].str.strip(), frame[CSV_LABEL]
    io.fail_on_first(path, texts, texts.eq(""), lambda _: "empty text")
    indexes = labels.map(_class_index)
    known = ", ".join(SENTIMENT_CLASSES)
    io.fail_on_first(path, labels, indexes.isna(), lambda value: f"{value!r} is not one of {known}")
    _require_rows(path, texts.tolist(), "data row")
    return SentimentCorpus(source=path, texts=tuple(texts), labels=pd.to_numeric(indexes).to_numpy(dtype=np.int64))


def read_corpus(path: Path, corpus_format: str) -> SentimentCorpus:
    """Read `path` with the reader of `corpus_format` ("phrasebank", "goemotions" or "csv")."""
    readers = {"phrasebank": read_phrasebank, "goemotions": read_goemotions, "csv": read_sentiment_csv}
    if corpus_format not in readers:
        raise ValueError(f"unknown format {corpus_format!r}; expected one of {', '.join(CORPUS_FORMATS)}")
    return readers[corpus_format](Path(path))
