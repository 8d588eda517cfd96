"""Read-only arrays shared between processes: a directory of `.npy` files that every process maps
(`np.load(mmap_mode="r")`), so N server workers hold one copy of them in the page cache instead of N
private copies.

- `write_arrays(directory, arrays, metadata)` writes the files into a temporary sibling directory and
  renames it into place: readers see a complete directory or none (concurrent writers: the first
  rename wins, the others discard their copy).
- `read_arrays(directory)` maps every array after checking it against the manifest (shape, dtype, byte
  size and CRC-32 of the file): a partial or corrupt directory raises `SharedArraysError`, never
  returns wrong numbers.
- `context_arrays` / `context_from_arrays`: a `FeatureContext` (plain or frozen) as such arrays.

Arrays must have a fixed-size dtype (numbers, bool, fixed-width `str`); object arrays would need pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.pairs import EventIndex, EventSums, FeatureContext, FrozenSums

MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 22  # CRC-32 read size: 4 MiB


class SharedArraysError(ValueError):
    """A directory that does not hold complete, intact shared arrays."""


@dataclass(frozen=True)
class SharedArrays:
    """Arrays mapped read-only from a directory, by name, and the JSON metadata stored with them."""

    arrays: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any]


def _file_name(name: str) -> str:
    """`shortlist/3/rows` -> `shortlist.3.rows.npy`: names are flat in the directory."""
    return name.replace("/", ".") + ".npy"


def _crc32(path: Path) -> int:
    """CRC-32 of a file, read in chunks (no mapping: checking must not pull pages into the process)."""
    checksum = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def write_arrays(directory: Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> bool:
    """Write `arrays` (name -> fixed-dtype array) and JSON-able `metadata` as the directory `directory`,
    atomically. Returns False (and leaves the existing directory alone) if another writer got there first."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        entries: dict[str, dict[str, Any]] = {}
        for name, array in arrays.items():
            if array.dtype.hasobject:
                raise TypeError(f"array {name!r} has dtype {array.dtype}: only fixed-size dtypes can be mapped")
            path = staging / _file_name(name)
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            entries[name] = {
                "shape": list(array.shape),
                "dtype": array.dtype.str,
                "bytes": path.stat().st_size,
                "crc32": _crc32(path),
            }
        # The manifest last: it lists every array, so a directory without one is incomplete.
        (staging / MANIFEST).write_text(json.dumps({"arrays": entries, "metadata": dict(metadata)}, indent=1))
        try:
            staging.rename(directory)
        except OSError:  # another writer renamed its complete copy first
            return False
        return True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def read_arrays(directory: Path) -> SharedArrays:
    """Map every array of `directory` read-only after checking it against the manifest.

    Raises SharedArraysError naming the directory and the first problem (missing manifest or file,
    other size, shape, dtype or checksum).
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        arrays: dict[str, np.ndarray] = {}
        for name, entry in manifest["arrays"].items():
            path = directory / _file_name(name)
            if path.stat().st_size != entry["bytes"] or _crc32(path) != entry["crc32"]:
                raise SharedArraysError(f"{path.name} differs from the manifest (size or checksum)")
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if list(array.shape) != entry["shape"] or array.dtype.str != entry["dtype"]:
                raise SharedArraysError(f"{path.name} holds {array.shape} {array.dtype}, the manifest says otherwise")
            arrays[name] = array
        return SharedArrays(arrays=arrays, metadata=manifest["metadata"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SharedArraysError(f"{directory} does not hold intact shared arrays: {error}") from error


def remove_arrays(directory: Path) -> None:
    """Delete a shared-arrays directory; processes that mapped its files keep reading them (the files
    live on until unmapped), and the rename first makes the removal atomic for readers."""
    directory = Path(directory)
    if not directory.exists():
        return
    doomed = Path(tempfile.mkdtemp(prefix=f".{directory.name}.removed.", dir=directory.parent))
    os.replace(directory, doomed / directory.name)
    shutil.rmtree(doomed, ignore_errors=True)


_PARTNER_ARRAYS = (
    "partner_ids",
    "partner_regions",
    "partner_home_region",
    "partner_certifications",
    "partner_capacity",
    "partner_joined_seconds",
    "partner_tier",
)
_EVENT_SUMS = tuple(field.name for field in fields(FeatureContext) if field.type == "EventSums")


def context_arrays(context: FeatureContext, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A FeatureContext, but for its partner vectors, as (arrays, metadata) for `write_arrays`, array
    names starting with `prefix`. The vectors are left out: the partner index holds the same ones."""
    arrays = {f"{prefix}{name}": np.asarray(getattr(context, name)) for name in _PARTNER_ARRAYS}
    arrays[f"{prefix}partner_ids"] = np.asarray(context.partner_ids, dtype=str)  # object -> fixed-width
    frozen_seconds: dict[str, list[int]] = {}
    for name in _EVENT_SUMS:
        sums: EventSums = getattr(context, name)
        index, tables = (sums.index, sums.tables) if isinstance(sums, FrozenSums) else (sums, {})
        if not isinstance(index, EventIndex):
            raise TypeError(f"cannot share {name} of type {type(index).__name__}")
        arrays[f"{prefix}{name}/composite"] = index.composite
        arrays[f"{prefix}{name}/running"] = index.running
        arrays.update({f"{prefix}{name}/at/{seconds}": table for seconds, table in tables.items()})
        frozen_seconds[name] = sorted(tables)
    metadata = {
        "products": list(context.products),
        "regions": list(context.regions),
        "history_end": context.history_end.isoformat(),
        "frozen_seconds": frozen_seconds,
    }
    return arrays, metadata


def context_from_arrays(
    shared: SharedArrays, prefix: str, metadata: Mapping[str, Any], partner_vectors: np.ndarray
) -> FeatureContext:
    """The FeatureContext that `context_arrays` split into `shared.arrays` and `metadata`, over the
    mapped arrays (no copies), with `partner_vectors` (n, d) float32 aligned with its partners."""
    arrays = shared.arrays

    def event_sums(name: str) -> EventSums:
        index = EventIndex(composite=arrays[f"{prefix}{name}/composite"], running=arrays[f"{prefix}{name}/running"])
        seconds = metadata["frozen_seconds"][name]
        if not seconds:
            return index
        return FrozenSums(index, {int(at): arrays[f"{prefix}{name}/at/{at}"] for at in seconds})

    partner_ids = arrays[f"{prefix}partner_ids"]
    if len(partner_vectors) != len(partner_ids):
        raise SharedArraysError(f"{len(partner_vectors)} partner vectors for {len(partner_ids)} partners")
    return FeatureContext(
        products=tuple(metadata["products"]),
        regions=tuple(metadata["regions"]),
        partner_ids=partner_ids,
        partner_position={str(partner_id): row for row, partner_id in enumerate(partner_ids.tolist())},
        partner_regions=arrays[f"{prefix}partner_regions"],
        partner_home_region=arrays[f"{prefix}partner_home_region"],
        partner_certifications=arrays[f"{prefix}partner_certifications"],
        partner_capacity=arrays[f"{prefix}partner_capacity"],
        partner_joined_seconds=arrays[f"{prefix}partner_joined_seconds"],
        partner_tier=arrays[f"{prefix}partner_tier"],
        partner_vectors=partner_vectors,
        outcomes_by_product=event_sums("outcomes_by_product"),
        outcomes_by_region=event_sums("outcomes_by_region"),
        outcomes_by_partner=event_sums("outcomes_by_partner"),
        outcomes_all=event_sums("outcomes_all"),
        attempts_by_partner=event_sums("attempts_by_partner"),
        engagement_by_partner=event_sums("engagement_by_partner"),
        history_end=pd.Timestamp(metadata["history_end"]),
    )
