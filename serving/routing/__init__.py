"""Route one deal to partners: validate -> embed -> retrieve -> constrain -> featurise -> score ->
rank -> explain, and resolve the channel conflict of a registered deal.

Pure Python over the model bundle's pieces (no bentoml): `Router.route(RouteRequest) -> RouteResponse`.
- `state`: load-time precomputation into an immutable `RoutingState` (once per bundle);
- `request`: request validation into a `ParsedRequest` (the request in the state's positions);
- `stages`: the request-time stages, pure functions passing frozen dataclasses along;
- `router`: `Router`, which composes them;
- `shared`: the state stored once per bundle as `.npy` files that every server worker maps.

Features are point-in-time as of the bundle's history end: every partner's history up to and
including `context.history_end` counts, exactly as `features.pairs` computes training rows.

Retrieval is a union, because the model ranks on history as much as on text:
- text neighbours: the `text_neighbours` partners whose profile embedding is closest to the
  requirement text (FAISS);
- history shortlist: at load the model scores every partner, per region it operates in, for a
  single-product prototype deal of each product (median amount, the mean text similarity of the
  cell's recent deals); a request takes the `shortlist_size` partners with the highest of these
  log-odds averaged over its products. Partners whose history (not text) makes them strong are
  found here.
Hard constraints then filter the union, and only the survivors are scored (a few hundred rows).
When few partners meet the constraints at all (`exhaustive_limit`), all of them are scored instead,
which is exact; `route(..., exhaustive=True)` always does that (the brute-force reference).
"""

from serving.routing.request import RoutingConflictError, UnknownPartnerError
from serving.routing.router import Router
from serving.routing.shared import shared_routing_state, state_directory
from serving.routing.stages import merit_order
from serving.routing.state import RoutingSettings

__all__ = [
    "Router",
    "RoutingConflictError",
    "RoutingSettings",
    "UnknownPartnerError",
    "merit_order",
    "shared_routing_state",
    "state_directory",
]
