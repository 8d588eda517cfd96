"""Encoders: the hashing fake and the cache (unit), real MiniLM torch vs ONNX int8 (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from features.embed import (
    TEXTS_PER_COUNT,
    CachedEncoder,
    Encoder,
    FusedOnnxMiniLMEncoder,
    HashingEncoder,
    MiniLMEncoder,
    OnnxMiniLMEncoder,
    export_onnx_int8,
    make_encoder,
)
from features.progress import SILENT, Progress
from tests.conftest import OnnxExport, RecordingProgress

REPO_ROOT = Path(__file__).resolve().parents[2]


class CountingEncoder:
    """Wraps HashingEncoder and records the texts of every encode call."""

    def __init__(self, name: str = "hashing-32") -> None:
        self.inner = HashingEncoder(32)
        self.name = name
        self.dimension = self.inner.dimension
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


# --- HashingEncoder -----------------------------------------------------------------------------


def test_hashing_encoder_shape_dtype_and_unit_rows() -> None:
    vectors = HashingEncoder(64).encode(["Firewall rollout for banks", "SD-WAN in DACH", "", "!!!"])
    assert vectors.shape == (4, 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_hashing_encoder_empty_input_gives_zero_rows() -> None:
    assert HashingEncoder(16).encode([]).shape == (0, 16)


def test_hashing_encoder_is_deterministic_across_processes() -> None:
    script = (
        "from features.embed import HashingEncoder;"
        "print(HashingEncoder(64).encode(['managed firewall']).tobytes().hex())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {HashingEncoder(64).encode(["managed firewall"]).tobytes().hex() + "\n"}


def test_hashing_encoder_is_case_insensitive_and_rewards_shared_words() -> None:
    query, related, unrelated, same_words = HashingEncoder(256).encode(
        [
            "next-generation firewall deployment for banks",
            "firewall deployment partner",
            "bakery supplies and flour",
            "NEXT-GENERATION Firewall deployment, for banks!",
        ]
    )
    assert cosine(query, same_words) == pytest.approx(1.0)
    assert cosine(query, related) > cosine(query, unrelated)
    assert cosine(query, related) > 0.3


def test_hashing_encoder_counts_texts_without_changing_vectors() -> None:
    texts = [f"text number {i}" for i in range(2 * TEXTS_PER_COUNT + 3)]
    progress = RecordingProgress()
    vectors = HashingEncoder(16).encode(texts, progress)
    assert progress.counts == [
        (TEXTS_PER_COUNT, len(texts)),
        (2 * TEXTS_PER_COUNT, len(texts)),
        (len(texts), len(texts)),
    ]
    np.testing.assert_array_equal(vectors, HashingEncoder(16).encode(texts))


def test_hashing_encoder_rejects_nonpositive_dimension() -> None:
    with pytest.raises(ValueError, match="dimension"):
        HashingEncoder(0)


# --- CachedEncoder ------------------------------------------------------------------------------


def test_cached_encoder_encodes_only_unique_misses_in_one_batch(tmp_path: Path) -> None:
    inner = CountingEncoder()
    cached = CachedEncoder(inner, tmp_path / "cache.sqlite")
    first = cached.encode(["alpha", "beta", "alpha"])
    second = cached.encode(["beta", "gamma", "gamma"])
    assert inner.calls == [["alpha", "beta"], ["gamma"]]
    np.testing.assert_array_equal(first, inner.inner.encode(["alpha", "beta", "alpha"]))
    np.testing.assert_array_equal(second, inner.inner.encode(["beta", "gamma", "gamma"]))
    assert (cached.name, cached.dimension) == (inner.name, inner.dimension)
    assert cached.encode([]).shape == (0, inner.dimension)
    assert len(inner.calls) == 2


def test_cached_encoder_counts_only_the_texts_it_encodes(tmp_path: Path) -> None:
    cached = CachedEncoder(HashingEncoder(8), tmp_path / "cache.sqlite")
    cached.encode(["alpha"])
    progress = RecordingProgress()
    cached.encode(["alpha", "beta", "gamma", "beta"], progress)
    assert progress.counts == [(2, 2)]  # beta and gamma, once each


def test_cached_encoder_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    expected = CachedEncoder(CountingEncoder(), path).encode(["alpha", "beta"])
    inner = CountingEncoder()
    np.testing.assert_array_equal(CachedEncoder(inner, path).encode(["beta", "alpha"]), expected[::-1])
    assert inner.calls == []


def test_cached_encoder_keys_include_the_encoder_name(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    CachedEncoder(CountingEncoder("first"), path).encode(["alpha"])
    other = CountingEncoder("second")
    CachedEncoder(other, path).encode(["alpha"])
    assert other.calls == [["alpha"]]


def test_cached_encoders_sharing_a_file_tolerate_a_concurrent_insert(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    writer_a = CachedEncoder(CountingEncoder(), path)

    class InterleavingEncoder(CountingEncoder):
        def encode(self, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
            writer_a.encode(texts)  # a stores the same texts between b's lookup and b's insert
            return super().encode(texts, progress)

    inner_b = InterleavingEncoder()
    writer_b = CachedEncoder(inner_b, path)
    vectors = writer_b.encode(["alpha", "beta"])
    assert inner_b.calls == [["alpha", "beta"]]
    np.testing.assert_array_equal(CachedEncoder(CountingEncoder(), path).encode(["alpha", "beta"]), vectors)
    writer_a.close()
    writer_b.close()


# --- make_encoder -------------------------------------------------------------------------------


def test_make_encoder_builds_hashing_with_and_without_cache(tmp_path: Path) -> None:
    plain = make_encoder("hashing-16", None)
    assert isinstance(plain, HashingEncoder)
    assert (plain.name, plain.dimension) == ("hashing-16", 16)
    cached = make_encoder("hashing-16", tmp_path)
    assert isinstance(cached, CachedEncoder)
    assert cached.name == "hashing-16"
    cached.encode(["alpha"])
    assert (tmp_path / "embeddings.sqlite").is_file()


def test_make_encoder_builds_minilm_encoders_lazily(tmp_path: Path) -> None:
    assert isinstance(make_encoder("minilm", None), MiniLMEncoder)
    onnx = make_encoder("minilm-onnx-int8", tmp_path)
    assert isinstance(onnx, CachedEncoder)
    assert isinstance(onnx.inner, OnnxMiniLMEncoder)
    assert onnx.inner.model_dir == tmp_path / "onnx"
    assert not (tmp_path / "onnx").exists()  # nothing exported until the first encode


@pytest.mark.parametrize(("name", "cache_dir"), [("bert", None), ("hashing-x", None), ("minilm-onnx-int8", None)])
def test_make_encoder_rejects_bad_requests(name: str, cache_dir: Path | None) -> None:
    with pytest.raises(ValueError, match="minilm-onnx-int8"):
        make_encoder(name, cache_dir)


# --- real MiniLM (integration) -------------------------------------------------------------------

VARIED_TEXTS = [
    "Managed security provider specialising in next-generation firewall rollouts for mid-market retail.",
    "We need SD-WAN across 40 branch offices in DACH with 24/7 support.",
    "Wholesale bakery supplies: flour, yeast and packaging for independent bakeries.",
    "Cloud migration of ERP workloads to Azure for a public sector agency.",
    "Platinum partner with expert endpoint security certifications serving banks in the Nordics.",
    "Customer wants managed detection and response with a 15-minute SLA for a hospital group.",
    "Data backup and disaster recovery for 200 TB of file shares; immutable storage required.",
    "Replace the legacy PBX with a collaboration suite and Teams voice for 3,000 seats.",
    "Identity and access management: SSO, MFA and privileged access for a logistics firm in LATAM.",
    "Boutique integrator focused on data analytics, dashboards and warehouse modernisation.",
    "Network refresh: campus switching, Wi-Fi 6E and NAC for a university in APAC.",
    "SAP S/4HANA integration with our CRM and e-commerce platform.",
    "Small MSP in Ohio offering helpdesk, backup and Microsoft 365 administration to dental practices.",
    "Zero trust network access pilot for remote engineers, replacing VPN concentrators.",
    "Firewall renewal plus a two-year managed service, budget approx 250k USD, decision in Q3.",
    "Storage consolidation onto all-flash arrays with tiering to object storage in the cloud.",
    "The deal is stalled; the customer asked for a proof of concept of the SIEM integration.",
    "Reseller of printers, office furniture and coffee machines.",
    "Certified professional services team for hybrid cloud landing zones on AWS and GCP.",
    "Ransomware incident last month: urgent need for EDR on 5,000 endpoints and an incident retainer.",
]


@pytest.fixture(scope="session")
def onnx_model_dir(onnx_export: OnnxExport) -> Path:
    return onnx_export.model_dir


@pytest.fixture(scope="session")
def onnx_encoder(onnx_model_dir: Path) -> OnnxMiniLMEncoder:
    return OnnxMiniLMEncoder(onnx_model_dir)


@pytest.fixture(scope="session")
def torch_encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.mark.integration
def test_onnx_export_shows_no_warnings_logs_or_bars(onnx_export: OnnxExport) -> None:
    assert onnx_export.escaped == []


@pytest.mark.integration
def test_onnx_export_is_complete_and_idempotent(onnx_model_dir: Path) -> None:
    model_file = onnx_model_dir / "model-int8.onnx"
    before = model_file.stat().st_mtime_ns
    assert export_onnx_int8(onnx_model_dir) == onnx_model_dir
    assert model_file.stat().st_mtime_ns == before
    assert {path.name for path in onnx_model_dir.iterdir()} == {
        "model-int8.onnx",
        "tokenizer.json",
        "sentence_bert_config.json",
    }


@pytest.mark.integration
def test_onnx_int8_matches_torch_fp32(onnx_encoder: OnnxMiniLMEncoder, torch_encoder: MiniLMEncoder) -> None:
    onnx_vectors = onnx_encoder.encode(VARIED_TEXTS)
    torch_vectors = torch_encoder.encode(VARIED_TEXTS)
    assert onnx_vectors.shape == torch_vectors.shape == (len(VARIED_TEXTS), 384)
    assert onnx_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, rtol=1e-5)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.97


@pytest.mark.integration
@pytest.mark.parametrize("encoder_fixture", ["onnx_encoder", "torch_encoder"])
def test_minilm_counts_texts_without_changing_vectors(encoder_fixture: str, request: pytest.FixtureRequest) -> None:
    encoder: Encoder = request.getfixturevalue(encoder_fixture)
    texts = VARIED_TEXTS * (TEXTS_PER_COUNT // len(VARIED_TEXTS) + 1)  # more than one group of texts
    progress = RecordingProgress()
    vectors = encoder.encode(texts, progress)
    assert progress.counts[-1] == (len(texts), len(texts))
    assert [done for done, _ in progress.counts] == sorted({done for done, _ in progress.counts})
    assert len(progress.counts) > 1
    np.testing.assert_array_equal(vectors, encoder.encode(texts))


@pytest.mark.integration
def test_onnx_batches_keep_input_order(onnx_model_dir: Path, onnx_encoder: OnnxMiniLMEncoder) -> None:
    one_at_a_time = onnx_encoder.encode(VARIED_TEXTS)
    batched = OnnxMiniLMEncoder(onnx_model_dir, batch_size=8).encode(VARIED_TEXTS)
    similarities = batched @ one_at_a_time.T
    assert (similarities.argmax(axis=1) == np.arange(len(VARIED_TEXTS))).all()
    assert similarities.diagonal().min() >= 0.97
    np.testing.assert_array_equal(onnx_encoder.encode(VARIED_TEXTS[3:4])[0], one_at_a_time[3])
    assert onnx_encoder.encode([]).shape == (0, 384)


@pytest.mark.integration
@pytest.mark.parametrize("encoder_fixture", ["onnx_encoder", "torch_encoder"])
def test_minilm_ranks_the_relevant_profile_first(encoder_fixture: str, request: pytest.FixtureRequest) -> None:
    encoder: Encoder = request.getfixturevalue(encoder_fixture)
    requirement, security, bakery = encoder.encode(
        [
            "Next-generation firewall deployment across 12 sites with intrusion prevention.",
            "Network security integrator: firewalls, VPN and threat protection for enterprises.",
            "Bakery supplies wholesaler: flour, sugar, baking trays and packaging.",
        ]
    )
    assert cosine(requirement, security) > cosine(requirement, bakery) + 0.2


def test_make_encoder_builds_the_fused_encoder_lazily_with_its_batch_size(tmp_path: Path) -> None:
    fused = make_encoder("minilm-onnx", tmp_path, threads=2)
    assert isinstance(fused, CachedEncoder) and isinstance(fused.inner, FusedOnnxMiniLMEncoder)
    assert fused.name == "all-MiniLM-L6-v2-onnx-fp32-fused"
    assert (fused.inner.model_dir, fused.inner.threads, fused.inner.batch_size) == (tmp_path / "onnx-fp32-fused", 2, 64)
    int8 = make_encoder("minilm-onnx-int8", tmp_path, batch_size=8)
    assert isinstance(int8, CachedEncoder) and isinstance(int8.inner, OnnxMiniLMEncoder)
    assert int8.inner.batch_size == 8
    assert not (tmp_path / "onnx-fp32-fused").exists()


@pytest.fixture(scope="session")
def fused_encoder(tmp_path_factory: pytest.TempPathFactory) -> FusedOnnxMiniLMEncoder:
    return FusedOnnxMiniLMEncoder(tmp_path_factory.mktemp("onnx-fused"), batch_size=8)


@pytest.mark.integration
def test_fused_onnx_matches_torch_and_gives_a_text_one_vector_alone_or_batched(
    fused_encoder: FusedOnnxMiniLMEncoder, torch_encoder: MiniLMEncoder
) -> None:
    batched = fused_encoder.encode(VARIED_TEXTS)
    alone = np.stack([fused_encoder.encode([text])[0] for text in VARIED_TEXTS])
    assert batched.shape == (len(VARIED_TEXTS), 384) and batched.dtype == np.float32
    assert np.max(1.0 - (batched * alone).sum(axis=1)) <= 1e-6
    assert (batched * torch_encoder.encode(VARIED_TEXTS)).sum(axis=1).min() >= 0.9999
    assert {path.name for path in fused_encoder.model_dir.iterdir()} == {
        "model-fp32-fused.onnx",
        "tokenizer.json",
        "sentence_bert_config.json",
    }
