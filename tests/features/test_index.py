"""PartnerIndex: exact flat search, IVF recall, persistence, short result lists, recall_at_k."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from features.index import IndexKind, PartnerIndex, default_nprobe, ivf_list_count, recall_at_k, set_search_threads


def clustered_unit_vectors(count: int, dimension: int, clusters: int, seed: int) -> np.ndarray:
    """(count, dimension) float32 unit rows scattered around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimension)).astype(np.float32)
    points = centres[rng.integers(0, clusters, count)] + 0.5 * rng.standard_normal((count, dimension))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def partner_ids(count: int) -> list[str]:
    return [f"P{position:05d}" for position in range(count)]


@pytest.fixture
def single_thread() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    set_search_threads(1)
    yield
    set_search_threads(before)


def test_flat_search_equals_numpy_brute_force() -> None:
    vectors = clustered_unit_vectors(500, 16, 10, seed=0)
    queries = clustered_unit_vectors(20, 16, 10, seed=1)
    index = PartnerIndex.build(partner_ids(500), vectors)
    positions, similarities = index.search(queries, k=10)
    expected_similarities = queries @ vectors.T
    expected_positions = np.argsort(-expected_similarities, axis=1, kind="stable")[:, :10]
    assert index.kind == "flat"
    assert index.nprobe is None
    assert positions.dtype == np.int64
    assert similarities.dtype == np.float32
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_allclose(similarities, np.take_along_axis(expected_similarities, positions, axis=1), atol=1e-5)
    assert index.partner_ids[positions[0, 0]] == f"P{expected_positions[0, 0]:05d}"


def test_ivf_recall_at_10_against_flat(single_thread: None) -> None:
    vectors = clustered_unit_vectors(20_000, 32, 100, seed=0)
    # Other centres (seed 1): queries fall between the partner clusters, the hard case for IVF.
    queries = clustered_unit_vectors(200, 32, 100, seed=1)
    ids = partner_ids(len(vectors))
    ivf = PartnerIndex.build(ids, vectors, kind="ivf")
    assert ivf.kind == "ivf"
    assert ivf.nprobe == default_nprobe(ivf_list_count(len(vectors)))
    exact, _ = PartnerIndex.build(ids, vectors, kind="flat").search(queries, k=10)
    approximate, _ = ivf.search(queries, k=10)
    assert recall_at_k(approximate, exact, k=10) >= 0.95
    one_probe, _ = PartnerIndex.build(ids, vectors, kind="ivf", nprobe=1).search(queries, k=10)
    assert recall_at_k(one_probe, exact, k=10) < 0.5  # the data is hard enough for nprobe to matter


def test_ivf_sizing_rules() -> None:
    assert ivf_list_count(100_000) == 1265
    assert ivf_list_count(20_000) == 512  # capped at n / 39 training points per list
    assert ivf_list_count(10) == 1
    assert default_nprobe(1024) == 64
    assert default_nprobe(4000) == 250
    assert default_nprobe(8) == 8


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_round_trip_gives_identical_results(tmp_path: Path, kind: IndexKind, mmap: bool) -> None:
    vectors = clustered_unit_vectors(2_000, 16, 20, seed=0)
    queries = clustered_unit_vectors(30, 16, 20, seed=1)
    index = PartnerIndex.build(partner_ids(2_000), vectors, kind=kind, nprobe=4 if kind == "ivf" else None)
    index.save(tmp_path / "index")
    loaded = PartnerIndex.load(tmp_path / "index", mmap=mmap)
    assert isinstance(loaded.vectors, np.memmap) == mmap
    assert (loaded.kind, loaded.nprobe, loaded.dimension, len(loaded)) == (index.kind, index.nprobe, 16, 2_000)
    np.testing.assert_array_equal(loaded.partner_ids, index.partner_ids)
    np.testing.assert_array_equal(loaded.vectors, vectors)
    for got, expected in zip(loaded.search(queries, 7), index.search(queries, 7), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert sorted(path.name for path in (tmp_path / "index").iterdir()) == [
        "index.faiss",
        "index.json",
        "partner_ids.npy",
        "vectors.npy",
    ]


def test_fewer_partners_than_k_pads_with_minus_one() -> None:
    vectors = clustered_unit_vectors(3, 8, 3, seed=0)
    index = PartnerIndex.build(["a", "b", "c"], vectors)
    positions, similarities = index.search(vectors[:2], k=5)
    assert positions.shape == similarities.shape == (2, 5)
    assert (positions[:, 3:] == -1).all()
    assert np.isneginf(similarities[:, 3:]).all()
    assert positions[0, 0] == 0
    assert similarities[0, 0] == pytest.approx(1.0, abs=1e-5)
    found = positions[1][positions[1] >= 0]
    assert sorted(index.partner_ids[found]) == ["a", "b", "c"]


def test_vector_access_returns_the_indexed_rows_read_only() -> None:
    vectors = clustered_unit_vectors(50, 8, 5, seed=0)
    index = PartnerIndex.build(partner_ids(50), vectors)
    np.testing.assert_array_equal(index.vector(7), vectors[7])
    with pytest.raises(ValueError, match="read-only"):
        index.vectors[0, 0] = 0.0


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (["a", "b"], clustered_unit_vectors(3, 8, 3, seed=0), "3 vectors"),
        (["a", "a", "b"], clustered_unit_vectors(3, 8, 3, seed=0), "unique"),
        (["a", "b", "c"], 2 * clustered_unit_vectors(3, 8, 3, seed=0), "L2-normalised"),
        (["a", "b", "c"], np.ones(3, dtype=np.float32), "2-D"),
    ],
)
def test_build_rejects_bad_input(ids: list[str], vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PartnerIndex.build(ids, vectors)


def test_build_rejects_nprobe_beyond_the_list_count() -> None:
    with pytest.raises(ValueError, match="nprobe"):
        PartnerIndex.build(partner_ids(200), clustered_unit_vectors(200, 8, 5, seed=0), kind="ivf", nprobe=50)


def test_search_rejects_wrong_query_dimension() -> None:
    index = PartnerIndex.build(partner_ids(10), clustered_unit_vectors(10, 8, 2, seed=0))
    with pytest.raises(ValueError, match="dimension"):
        index.search(clustered_unit_vectors(1, 4, 1, seed=0), k=3)


def test_load_missing_or_corrupt_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing-index"):
        PartnerIndex.load(tmp_path / "missing-index")
    directory = tmp_path / "corrupt-index"
    PartnerIndex.build(partner_ids(10), clustered_unit_vectors(10, 8, 2, seed=0)).save(directory)
    (directory / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(ValueError, match="corrupt-index"):
        PartnerIndex.load(directory)
    PartnerIndex.build(partner_ids(9), clustered_unit_vectors(9, 8, 2, seed=0)).save(directory)
    np.save(directory / "partner_ids.npy", np.asarray(partner_ids(4)))
    with pytest.raises(ValueError, match="disagrees"):
        PartnerIndex.load(directory)


def test_recall_at_k() -> None:
    exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert recall_at_k(exact, exact, k=4) == 1.0
    assert recall_at_k(np.array([[3, 9, 9, 9], [4, 5, 9, 9]]), exact, k=4) == pytest.approx(0.375)
    assert recall_at_k(np.array([[1, 0, 9, 9], [4, 9, 9, 9]]), exact, k=2) == pytest.approx(0.75)
    short_exact = np.array([[2, 0, -1, -1]])
    assert recall_at_k(np.array([[0, 2, -1, -1]]), short_exact, k=4) == 1.0
    assert recall_at_k(np.array([[0, -1, -1, -1]]), short_exact, k=4) == 0.5
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, -1]]), k=2) == 1.0


def test_set_search_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match="threads"):
        set_search_threads(0)
