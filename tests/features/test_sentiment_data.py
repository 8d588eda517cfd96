"""features.sentiment_data: readers on tiny files (good and bad), the label mapping, the text split,
and the real PhraseBank / GoEmotions files when shared/data is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features import io
from features.sentiment_data import (
    SENTIMENT_CLASSES,
    SentimentCorpus,
    goemotions_class,
    held_out,
    read_corpus,
    read_goemotions,
    read_phrasebank,
    read_sentiment_csv,
    split_phrasebank,
)
from tests.conftest import SHARED_DATA, needs_shared_data

NEGATIVE, NEUTRAL, POSITIVE = range(3)
EMOTIONS = ["joy", "anger", "annoyance", "surprise", "sadness", "neutral"]
POLARITY = {"positive": ["joy"], "negative": ["anger", "annoyance", "sadness"], "ambiguous": ["surprise"]}


def write_phrasebank(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def write_goemotions(directory: Path, rows: list[str], polarity: dict[str, list[str]] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "labels.txt").write_text("\n".join(EMOTIONS) + "\n")
    (directory / "sentiment_dict.json").write_text(json.dumps(polarity or POLARITY))
    (directory / "train.tsv").write_text("\n".join(rows) + "\n")
    return directory / "train.tsv"


def test_phrasebank_reads_labels_latin1_and_counts_unlabelled_lines(tmp_path: Path) -> None:
    path = write_phrasebank(
        tmp_path / "Sentences_AllAgree.txt",
        ["Profit rose to EUR 5 mn .@positive", "1", "Caf\xe9 chain Oy cut 40 jobs .@negative", "The email@neutral"],
    )
    corpus = read_phrasebank(path)
    assert corpus.texts == ("Profit rose to EUR 5 mn .", "Caf\xe9 chain Oy cut 40 jobs .", "The email")
    assert corpus.labels.tolist() == [POSITIVE, NEGATIVE, NEUTRAL]
    assert corpus.frustrated is None
    assert corpus.dropped == {"no_label": 1}
    assert corpus.class_counts() == {"negative": 1, "neutral": 1, "positive": 1}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["Fine .@positive", "Sales fell .@bad"],
            r"x.txt line 2: label 'bad' is not one of negative, neutral, positive",
        ),
        (["Fine .@positive", "  @neutral"], r"x.txt line 2: empty sentence"),
        (["no label here", ""], r"x.txt: no `sentence@label` line found"),
    ],
)
def test_phrasebank_bad_lines_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(io.DataError, match=message):
        read_phrasebank(write_phrasebank(tmp_path / "x.txt", lines))


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(io.DataError, match=r"absent\.txt: file does not exist"):
        read_phrasebank(tmp_path / "absent.txt")


def test_held_out_is_by_text_deterministic_and_salted() -> None:
    texts = [f"sentence {i}" for i in range(4000)]
    test = held_out(texts, 0.2, "test")
    assert 0.17 < test.mean() < 0.23
    np.testing.assert_array_equal(test, held_out(list(reversed(texts)), 0.2, "test")[::-1])
    assert held_out(["same", "same"], 0.5, "test").tolist() in ([True, True], [False, False])
    validation = held_out(texts, 0.2, "validation")
    assert 0.1 < (test & validation).sum() / test.sum() < 0.3  # independent of the test split
    with pytest.raises(ValueError, match="fraction"):
        held_out(texts, 1.0, "test")


def test_split_phrasebank_keeps_nested_files_on_the_same_side(tmp_path: Path) -> None:
    sentences = [f"Company {i} reported results .@{SENTIMENT_CLASSES[i % 3]}" for i in range(200)]
    loose = write_phrasebank(tmp_path / "Sentences_50Agree.txt", sentences)
    strict = write_phrasebank(tmp_path / "Sentences_AllAgree.txt", sentences[::3])
    loose_train, loose_test = (read_phrasebank(path) for path in split_phrasebank(loose, tmp_path / "loose"))
    strict_train, strict_test = (read_phrasebank(path) for path in split_phrasebank(strict, tmp_path / "strict"))
    assert len(loose_train) + len(loose_test) == 200 and len(loose_test) > 10
    assert set(strict_test.texts) <= set(loose_test.texts)
    assert set(strict_train.texts) <= set(loose_train.texts)


@pytest.mark.parametrize(
    ("emotions", "expected"),
    [
        (["joy"], POSITIVE),
        (["anger", "sadness"], NEGATIVE),
        (["neutral"], NEUTRAL),
        (["surprise"], "ambiguous"),
        (["joy", "surprise"], "ambiguous"),
        (["joy", "sadness"], "mixed"),
        (["neutral", "joy"], "mixed"),
    ],
)
def test_goemotions_class_mapping(emotions: list[str], expected: int | str) -> None:
    polarity = {emotion: group for group, members in POLARITY.items() for emotion in members} | {"neutral": "neutral"}
    assert goemotions_class(emotions, polarity) == expected


def test_goemotions_maps_to_three_classes_with_frustration(tmp_path: Path) -> None:
    path = write_goemotions(
        tmp_path,
        ["great\t0\ta1", "ugh, again\t2\ta2", "wow\t3\ta3", "ok\t5\ta4", "bittersweet\t0,4\ta5", "so sad\t4\ta6"],
    )
    corpus = read_goemotions(path)
    assert corpus.texts == ("great", "ugh, again", "ok", "so sad")
    assert corpus.labels.tolist() == [POSITIVE, NEGATIVE, NEUTRAL, NEGATIVE]
    assert corpus.frustrated is not None and corpus.frustrated.tolist() == [False, True, False, False]
    assert corpus.dropped == {"ambiguous": 1, "mixed": 1}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("no tabs at all", r"train.tsv line 2: expected 3 tab-separated fields, found 1"),
        ("text\t9\tid", r"train.tsv line 2: label id '9' is not an integer in 0..5"),
        ("text\tx\tid", r"train.tsv line 2: label id 'x' is not an integer"),
        (" \t0\tid", r"train.tsv line 2: empty text"),
    ],
)
def test_goemotions_bad_lines_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(io.DataError, match=message):
        read_goemotions(write_goemotions(tmp_path, ["fine\t0\tid", row]))


def test_goemotions_vocabulary_files_are_checked(tmp_path: Path) -> None:
    path = write_goemotions(tmp_path, ["fine\t0\tid"], {"positive": ["joy"], "negative": [], "ambiguous": []})
    with pytest.raises(io.DataError, match=r"sentiment_dict.json: no sentiment for the labels anger"):
        read_goemotions(path)
    (tmp_path / "sentiment_dict.json").unlink()
    with pytest.raises(io.DataError, match=r"sentiment_dict.json: file does not exist"):
        read_goemotions(path)


def test_csv_reader_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "texts.csv"
    path.write_text('text,label,extra\n"Thanks, all good",Positive,1\nInvoice attached, neutral ,2\n')
    corpus = read_sentiment_csv(path)
    assert corpus.texts == ("Thanks, all good", "Invoice attached")
    assert corpus.labels.tolist() == [POSITIVE, NEUTRAL]
    path.write_text("text,label\nfine,positive\nawful,terrible\n")
    with pytest.raises(io.DataError, match=r"texts.csv line 3, column label: 'terrible' is not one of"):
        read_sentiment_csv(path)
    path.write_text("text,label\n,positive\n")
    with pytest.raises(io.DataError, match=r"line 2, column text: empty text"):
        read_sentiment_csv(path)
    path.write_text("message,label\nfine,positive\n")
    with pytest.raises(io.DataError, match=r"column text: missing column"):
        read_sentiment_csv(path)


def test_read_corpus_dispatches_and_rejects_unknown_formats(tmp_path: Path) -> None:
    path = write_phrasebank(tmp_path / "x.txt", ["Fine .@positive"])
    assert isinstance(read_corpus(path, "phrasebank"), SentimentCorpus)
    with pytest.raises(ValueError, match="unknown format 'tweets'"):
        read_corpus(path, "tweets")


def test_subset_keeps_rows_aligned(tmp_path: Path) -> None:
    corpus = read_goemotions(write_goemotions(tmp_path, ["great\t0\ta", "ugh\t2\tb", "ok\t5\tc"]))
    part = corpus.subset(np.array([False, True, True]))
    assert part.texts == ("ugh", "ok") and part.labels.tolist() == [NEGATIVE, NEUTRAL]
    assert part.frustrated is not None and part.frustrated.tolist() == [True, False]
    assert corpus.subset(np.array([2, 0])).texts == ("ok", "great")


@needs_shared_data
def test_real_files_load_with_documented_counts() -> None:
    phrasebank = SHARED_DATA / "financial-phrasebank"
    loose = read_phrasebank(phrasebank / "Sentences_50Agree.txt")
    strict = read_phrasebank(phrasebank / "Sentences_AllAgree.txt")
    assert set(strict.texts) <= set(loose.texts)  # nested files
    assert set(np.array(strict.texts)[held_out(strict.texts, 0.2, "test")]) <= set(
        np.array(loose.texts)[held_out(loose.texts, 0.2, "test")]
    )
    train = read_goemotions(SHARED_DATA / "goemotions" / "train.tsv")
    assert len(train) + sum(train.dropped.values()) == 43410
    assert train.frustrated is not None and 0.05 < train.frustrated.mean() < 0.2
    assert min(train.class_counts().values()) > 5000
