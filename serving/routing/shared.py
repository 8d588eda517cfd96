"""A `RoutingState` shared by every server worker: computed once per bundle version, stored as
`.npy` files and memory-mapped by each worker, so `--workers 2` holds one copy of the arrays.

`shared_routing_state(directory, build, ...)`: under an exclusive file lock (workers start together;
the others wait for the first instead of computing the same state), read the arrays in `directory`;
if they are missing, partial or corrupt, call `build()`, write its arrays atomically, and read them
back, so the building worker maps the same files as the others. The state read is equal, array for
array, to the one built.

The model, the encoder and the partner index are not stored here: the caller loads them (the index
mapped too, `PartnerIndex.load(..., mmap=True)`), and the context's partner vectors are the index's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from features.embed import Encoder
from features.index import PartnerIndex
from features.shared_arrays import (
    SharedArrays,
    SharedArraysError,
    context_arrays,
    context_from_arrays,
    read_arrays,
    remove_arrays,
    write_arrays,
)
from serving.routing.state import (
    RegionShortlistLogits,
    RoutingSettings,
    RoutingState,
    ScoringModel,
    check_pieces,
)
from serving.schemas import ModelInfo

STATE_FILES_VERSION = 1  # part of the directory name: bump when the stored arrays change meaning
CONTEXT_PREFIX = "context/"


def state_directory(root: Path, bundle_name: str, settings: RoutingSettings) -> Path:
    """Where the state of bundle `bundle_name` (unique per registered version) with `settings` lives."""
    digest = hashlib.sha1(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]
    return Path(root) / f"{bundle_name}-{digest}-f{STATE_FILES_VERSION}"


def state_arrays(state: RoutingState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The state's arrays and metadata for `write_arrays` (all but the model, index and encoder)."""
    arrays, context_metadata = context_arrays(state.context, CONTEXT_PREFIX)
    arrays["index_rows"] = state.index_rows
    arrays["partner_names"] = np.asarray(state.partner_names, dtype=str)  # object -> fixed-width
    arrays["load_ratio"] = state.load_ratio
    for region, shortlist in state.shortlist_logits.items():
        arrays[f"shortlist/{region}/rows"] = shortlist.rows
        arrays[f"shortlist/{region}/logits"] = shortlist.logits
    metadata = {
        "as_of_seconds": state.as_of_seconds,
        "shortlist_regions": sorted(state.shortlist_logits),
        "context": context_metadata,
    }
    return arrays, metadata


def state_from_arrays(
    shared: SharedArrays,
    model: ScoringModel,
    index: PartnerIndex,
    encoder: Encoder,
    model_info: ModelInfo,
    settings: RoutingSettings,
) -> RoutingState:
    """The RoutingState over mapped arrays (no copies). Raises ValueError when they do not fit the
    model, index or encoder."""
    metadata, arrays = shared.metadata, shared.arrays
    context = context_from_arrays(shared, CONTEXT_PREFIX, metadata["context"], index.vectors)
    check_pieces(model, context, index, encoder)
    return RoutingState(
        model=model,
        context=context,
        index=index,
        encoder=encoder,
        model_info=model_info,
        settings=settings,
        as_of_seconds=int(metadata["as_of_seconds"]),
        index_rows=arrays["index_rows"],
        partner_names=arrays["partner_names"],
        region_positions=MappingProxyType({region: position for position, region in enumerate(context.regions)}),
        product_positions=MappingProxyType({product: position for position, product in enumerate(context.products)}),
        load_ratio=arrays["load_ratio"],
        shortlist_logits=MappingProxyType(
            {
                int(region): RegionShortlistLogits(
                    rows=arrays[f"shortlist/{region}/rows"], logits=arrays[f"shortlist/{region}/logits"]
                )
                for region in metadata["shortlist_regions"]
            }
        ),
    )


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_path` (released when the process dies, too)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_routing_state(
    directory: Path,
    build: Callable[[], RoutingState],
    model: ScoringModel,
    index: PartnerIndex,
    encoder: Encoder,
    model_info: ModelInfo,
    settings: RoutingSettings,
) -> RoutingState:
    """The routing state mapped from `directory`, built with `build()` and stored there first if the
    directory is missing, partial or corrupt. `directory` names one bundle version and `settings`
    (the caller keys it); `build` must return the state of the same model, index and settings."""
    directory = Path(directory)
    with _exclusive(directory.with_name(f".{directory.name}.lock")):
        try:
            return state_from_arrays(read_arrays(directory), model, index, encoder, model_info, settings)
        except SharedArraysError:
            remove_arrays(directory)
        arrays, metadata = state_arrays(build())
        write_arrays(directory, arrays, metadata)
        del arrays  # the built copies: from here on this process maps the files like every other
        return state_from_arrays(read_arrays(directory), model, index, encoder, model_info, settings)
