"""The routing state stored once as .npy files and mapped by every worker: equal to the built one
(arrays, feature values, responses), reused on a second load, rebuilt when partial or corrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.index import PartnerIndex
from features.pairs import FEATURE_COLUMNS
from features.shared_arrays import MANIFEST, SharedArraysError, read_arrays
from serving.routing import Router, shared_routing_state
from serving.routing.state import RoutingState, single_deal, single_deal_features
from serving.schemas import RouteRequest, RouteResponse
from tests.serving.conftest import World, deal_body

COMPARED_DEALS = 12


class CountingBuild:
    """`build` for shared_routing_state that hands out a built state and counts the calls."""

    def __init__(self, state: RoutingState) -> None:
        self.state = state
        self.calls = 0

    def __call__(self) -> RoutingState:
        self.calls += 1
        return self.state


def mapped_state(built: RoutingState, directory: Path, build: CountingBuild | None = None) -> RoutingState:
    """`built` through shared_routing_state, with the partner index mapped from its saved files."""
    index_dir = directory.parent / "index"
    if not index_dir.exists():
        built.index.save(index_dir)
    index = PartnerIndex.load(index_dir, mmap=True)
    return shared_routing_state(
        directory,
        build or CountingBuild(built),
        built.model,
        index,
        built.encoder,
        built.model_info,
        built.settings,
    )


def without_decision_id(response: RouteResponse) -> dict[str, Any]:
    return response.model_dump(mode="json", exclude={"decision_id"})


def requests(world: World) -> list[RouteRequest]:
    """Plain deals, and deals with every kind of option, so every stage reads the state."""
    bodies = [{"deal": deal_body(world.deals, row), "options": {"max_results": 10}} for row in range(COMPARED_DEALS)]
    partner = str(world.partners.iloc[0]["partner_id"])
    region = str(world.partners.iloc[0]["home_region"])
    bodies.append(
        {
            "deal": deal_body(world.deals, 0, registered_partner_id=partner, region=region),
            "options": {
                "max_results": 5,
                "respect_capacity": True,
                "excluded_partner_ids": [str(world.partners.iloc[1]["partner_id"])],
            },
        }
    )
    return [RouteRequest.model_validate(body) for body in bodies]


@pytest.mark.parametrize("router_name", ["router", "retrieval_router"])
def test_mapped_state_routes_exactly_like_the_built_one(
    synthetic_world: World, tmp_path: Path, router_name: str
) -> None:
    built_router: Router = getattr(synthetic_world, router_name)
    built = built_router.state
    mapped = mapped_state(built, tmp_path / "state")
    assert isinstance(mapped.load_ratio, np.memmap) and isinstance(mapped.context.partner_vectors, np.memmap)

    np.testing.assert_array_equal(mapped.load_ratio, built.load_ratio)
    np.testing.assert_array_equal(mapped.index_rows, built.index_rows)
    assert mapped.partner_names.tolist() == built.partner_names.tolist()
    assert mapped.shortlist_logits.keys() == built.shortlist_logits.keys()
    for region, shortlist in built.shortlist_logits.items():
        np.testing.assert_array_equal(mapped.shortlist_logits[region].rows, shortlist.rows)
        np.testing.assert_array_equal(mapped.shortlist_logits[region].logits, shortlist.logits)
    assert (mapped.as_of_seconds, mapped.context.history_end) == (built.as_of_seconds, built.context.history_end)

    # Feature values of every partner, as of the frozen time and a week earlier (the index path).
    every_row = np.arange(len(built.context.partner_ids), dtype=np.int64)
    vector = built.context.partner_vectors[0]
    for seconds in (built.as_of_seconds, built.as_of_seconds - 7 * 86_400):
        deal = single_deal(seconds, 0, np.arange(len(built.context.products)) < 2, 50_000.0, vector)
        mapped_features = single_deal_features(mapped.context, deal, every_row)
        assert mapped_features.shape == (len(every_row), len(FEATURE_COLUMNS))
        np.testing.assert_array_equal(mapped_features, single_deal_features(built.context, deal, every_row))

    mapped_router = Router.from_state(mapped)
    for request in requests(synthetic_world):
        assert without_decision_id(mapped_router.route(request)) == without_decision_id(built_router.route(request))


def test_second_load_reuses_the_files(synthetic_world: World, tmp_path: Path) -> None:
    built = synthetic_world.router.state
    first_build, second_build = CountingBuild(built), CountingBuild(built)
    mapped_state(built, tmp_path / "state", first_build)
    written = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "state").iterdir()}
    mapped_state(built, tmp_path / "state", second_build)
    assert (first_build.calls, second_build.calls) == (1, 0)
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "state").iterdir()} == written


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-8])


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no_manifest"])
def test_partial_or_corrupt_files_are_rebuilt_not_used(synthetic_world: World, tmp_path: Path, damage: str) -> None:
    built = synthetic_world.router.state
    directory = tmp_path / "state"
    mapped_state(built, directory)
    victim = directory / "load_ratio.npy"
    {
        "flip": _flip_a_byte,
        "truncate": _truncate,
        "delete": Path.unlink,
        "no_manifest": lambda _: (directory / MANIFEST).unlink(),
    }[damage](victim)
    with pytest.raises(SharedArraysError):
        read_arrays(directory)

    rebuild = CountingBuild(built)
    mapped = mapped_state(built, directory, rebuild)
    assert rebuild.calls == 1
    np.testing.assert_array_equal(mapped.load_ratio, built.load_ratio)
    read_arrays(directory)  # intact again


def test_load_router_maps_a_state_equal_to_the_bundle_built_one(smoke_store: Path) -> None:
    from models.bundle import ModelBundle
    from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, local_bundle, version_by_alias
    from serving.service import load_router

    paths = Paths.from_environment()
    mapped_router = load_router(paths)
    stored = {path: path.stat().st_mtime_ns for path in (paths.cache_dir / "routing-state").rglob("*.npy")}
    assert stored and isinstance(mapped_router.state.load_ratio, np.memmap)
    assert isinstance(load_router(paths).state.load_ratio, np.memmap)
    assert {path: path.stat().st_mtime_ns for path in stored} == stored  # reused, not rewritten

    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert champion is not None
    bundle = ModelBundle.load(local_bundle(paths, champion))
    assert bundle.index is not None
    built_router = Router(
        model=bundle.win_model,
        context=bundle.feature_context(),
        index=bundle.index,
        encoder=mapped_router.encoder,
        partners=bundle.history["partners"],
        history_deals=bundle.history["deals"],
        model_info=mapped_router.model_info,
    )
    deals = bundle.history["deals"]
    for row in range(COMPARED_DEALS):
        request = RouteRequest.model_validate({"deal": deal_body(deals, row), "options": {"max_results": 10}})
        assert without_decision_id(mapped_router.route(request)) == without_decision_id(built_router.route(request))
