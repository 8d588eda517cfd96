"""The BentoML service: load the champion, wire the API's layers, map domain errors to statuses.

    bentoml serve serving.service:PartnerMatch      (what `partnermatch serve` runs)

Endpoints: `POST /route` (RouteRequest -> RouteResponse), `GET /decisions/{decision_id}`,
`POST /feedback` (CRM outcomes and engagement; live features, `serving.feedback`), Swagger UI
`POST /ipp_fit` and `GET /white_space` (`serving.ipp`: ideal-partner fit and white space, from
`partnermatch-ipp@champion` when one is registered, else 503), the recruiters' page at
`/app/recruiters` (`serving.web`, public; its data calls need a key with the `ipp` scope), Swagger UI
at `/docs` (and `/`) over the contract at `/docs.json` (`serving.contract`: OpenAPI 3.1 with the
loaded model's vocabularies), and BentoML's `/healthz`, `/livez`, `/readyz`, `/metrics` (Prometheus).

Every endpoint but the health probes, `/metrics` and the docs needs an API key with the endpoint's
scope (`serving.keys`, `serving.asgi.ApiKeyAuth`), within the key's rate limit. `POST /route` takes
an `Idempotency-Key` (`serving.idempotency`): a retry gets the original decision back.

The model comes from the MLflow registry (`partnermatch-win@champion`, its bundle carries the
FAISS index and the history); paths come from the environment (`models.registry.Paths`), the
decision log, the feedback events and the API keys from one database (`serving.stores`):
`PARTNERMATCH_DATABASE_URL`, default the SQLite file `<mlruns>/decisions.sqlite` (see `database_url`).
Each worker migrates it to the latest schema at start-up. A database that cannot be reached (or stays
locked) answers 503 with `Retry-After`, never 500.

Shadow mode (`PARTNERMATCH_SHADOW=challenger`, `serving.shadow`): the challenger also routes each
new decision and its answer is logged beside the champion's.

Hot reload (`serving.reload`): every model (win champion and its live features, shadow, team, IPP,
sentiment, health) is held in one `ServedModels` value that a reload replaces atomically; the
aliases are polled every `PARTNERMATCH_RELOAD_SECONDS` (30; 0 off) or checked at once by
`POST /admin/reload` (scope `admin`, in the worker it reaches). `GET /models` (scope `read_models`)
lists each loaded model with its version, training window and drift status.

Errors all have the one shape of `serving.errors` (statuses listed in `ERROR_STATUSES`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import bentoml
import httpx
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from features.embed import CachedEncoder, Encoder, make_encoder
from features.index import PartnerIndex, set_search_threads
from features.pairs import FeatureError
from features.progress import SILENT, Progress
from models.bundle import INDEX_DIR, ModelBundle
from models.health import UnknownPartnersError
from models.registry import (
    CHAMPION,
    FEEDBACK_SEQUENCE_TAG,
    REGISTERED_HEALTH_MODEL,
    REGISTERED_IPP_MODEL,
    REGISTERED_SENTIMENT_MODEL,
    REGISTERED_TEAM_MODEL,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
    RegistryError,
    local_bundle,
    one_line,
    version_by_alias,
)
from models.solver import SolverError
from serving.asgi import INTERNAL_HEADER, ApiKeyAuth, BodyLimits, JsonErrors, SwaggerAtDocs, caller, internal_token
from serving.batch import route_batch
from serving.contract import Operation, Vocabulary, api_document
from serving.decision_log import DecisionLog
from serving.errors import error_json, status_of
from serving.feedback import LiveRouter, accept_feedback
from serving.feedback_store import FeedbackStore
from serving.health import (
    TRAIN_HEALTH,
    TRAIN_SENTIMENT,
    LoadedHealth,
    LoadedSentiment,
    at_risk_response,
    cohorts_response,
    health_of,
    health_response,
    health_status,
    kpi_response,
    missing_model_reason,
    sentiment_of,
    sentiment_response,
    sentiment_rows,
    trends_response,
)
from serving.health_schemas import (
    MAX_SENTIMENT_TEXTS,
    AtRiskResponse,
    CohortsResponse,
    PartnerHealthRequest,
    PartnerHealthResponse,
    PartnerKpis,
    PartnerTrends,
    SentimentRequest,
    SentimentResponse,
)
from serving.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    Decided,
    DecisionResponse,
    RequestT,
    decide_once,
    record_decision,
    retry_claim,
)
from serving.ipp import MISSING_MODEL_REASON, IppScorer, ipp_scorer_of
from serving.ipp_schemas import IppFitRequest, IppFitResponse, ProspectIn, WhiteSpaceResponse
from serving.keys import AccessPolicy, KeyStore, Scope
from serving.models import model_changes, model_statuses
from serving.prospect_lists import ProspectListStore, prospect_lists_beside
from serving.reload import HotSwap, Loaded, loaded, refreshed, reload_seconds, same_version
from serving.routing import Router, RoutingSettings, shared_routing_state, state_directory
from serving.routing.state import RoutingState
from serving.schemas import (
    DealIn,
    EngagementIn,
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    ModelsResponse,
    OutcomeIn,
    ReloadResponse,
    RouteOptions,
    RouteRequest,
    RouteResponse,
)
from serving.shadow import SHADOW_ENV, Shadow, shadow_alias
from serving.stores import UNAVAILABLE_ERRORS, import_legacy_feedback, import_legacy_keys, sqlite_url, upgrade_database
from serving.team import TEAM_TRAINING_COMMAND, ModelNotRegisteredError, TeamAssembler, assemble
from serving.team_schemas import (
    BatchOptions,
    BatchRouteRequest,
    BatchRouteResponse,
    DecisionRecord,
    TeamOptions,
    TeamRequest,
    TeamResponse,
    WhyNotRequest,
    WhyNotResponse,
)
from serving.web.pages import WEB_PREFIX, web_app
from serving.why_not import explain_why_not

logger = logging.getLogger(__name__)
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)

DATABASE_URL_ENV = "PARTNERMATCH_DATABASE_URL"
# Before one database URL: the decision log's SQLite file (still the default database), and a separate
# key store file and feedback file (their rows are imported into the database once; see `prepare_database`).
DECISION_LOG_ENV = "PARTNERMATCH_DECISION_LOG"
KEY_STORE_ENV = "PARTNERMATCH_API_KEYS"
FEEDBACK_STORE_ENV = "PARTNERMATCH_FEEDBACK_STORE"
LOCAL_KEY_FILE = "api-key"


def decision_log_path(paths: Paths) -> Path:
    """The default database file: `$PARTNERMATCH_DECISION_LOG`, else `<mlruns>/decisions.sqlite`."""
    return Path(os.environ.get(DECISION_LOG_ENV) or paths.mlruns_dir / "decisions.sqlite")


def database_url(paths: Paths) -> str:
    """The service's database: `$PARTNERMATCH_DATABASE_URL`, else the SQLite file `decision_log_path`."""
    return os.environ.get(DATABASE_URL_ENV) or sqlite_url(decision_log_path(paths))


def legacy_feedback_path(paths: Paths) -> Path:
    """The feedback file of the pre-database layout: `$PARTNERMATCH_FEEDBACK_STORE`, else
    `feedback.sqlite` beside the decision log."""
    return Path(os.environ.get(FEEDBACK_STORE_ENV) or decision_log_path(paths).parent / "feedback.sqlite")


def feedback_applied(version: RegisteredVersion) -> int:
    """The feedback sequence number a win model version's history already holds (0: none)."""
    return int(version.tags.get(FEEDBACK_SEQUENCE_TAG, 0))


def key_store_beside(decision_log: Path) -> Path:
    """The key store file of the pre-database layout: `api-keys.sqlite` beside the decision log."""
    return decision_log.parent / "api-keys.sqlite"


def key_store_path(paths: Paths) -> Path:
    """The key store file of the pre-database layout: `$PARTNERMATCH_API_KEYS`, else beside the decision log."""
    return Path(os.environ.get(KEY_STORE_ENV) or key_store_beside(decision_log_path(paths)))


def local_key_path(paths: Paths) -> Path:
    """The token of `partnermatch serve`'s local admin key: `api-key` beside the key store (mode 0600)."""
    return key_store_path(paths).parent / LOCAL_KEY_FILE


def prepare_database(paths: Paths) -> str:
    """Migrate the database of these paths to the latest schema and import the keys and the feedback
    events of the files of the pre-database layout (`key_store_path`, `legacy_feedback_path`; each
    renamed `*.imported` once read); its URL."""
    url = database_url(paths)
    upgrade_database(url)
    import_legacy_keys(url, key_store_path(paths))
    import_legacy_feedback(url, legacy_feedback_path(paths))
    return url


@cache
def _service_database() -> str:
    """The database of this worker, prepared once per process (the key store and the service share it)."""
    return prepare_database(Paths.from_environment())


def open_key_store(paths: Paths | None = None, recheck_seconds: float = 0.0) -> KeyStore:
    """The key store of these paths (default: from the environment), its database prepared; see `KeyStore`."""
    return KeyStore(prepare_database(paths or Paths.from_environment()), recheck_seconds)


# The service reads a key at most once a second: a revocation takes effect within a second, and most
# requests need no database read (~0.3-1 ms each through SQLAlchemy on 2 cores).
KEY_RECHECK_SECONDS = 1.0


def _service_key_store() -> KeyStore:
    return KeyStore(_service_database(), KEY_RECHECK_SECONDS)


# One worker serves one request at a time; two onnxruntime threads embed a deal's text in ~4.5 ms
# instead of ~6.5 ms on one (measured on 2 cores, 17-word texts).
SERVING_ENCODER_THREADS = 2


def _serving_encoder(name: str, cache_dir: Path) -> Encoder:
    """The bundle's encoder without the on-disk embedding cache: a request's text is new, and a cache
    write per request would put an fsync on the latency path (and grow the cache without bound)."""
    encoder = make_encoder(name, cache_dir, threads=SERVING_ENCODER_THREADS)
    return encoder.inner if isinstance(encoder, CachedEncoder) else encoder


def load_router(
    paths: Paths, progress: Progress = SILENT, alias: str = CHAMPION, model_name: str = REGISTERED_WIN_MODEL
) -> Router:
    """A Router over the registered `alias` (default: champion) of `model_name` (a bundle: win model,
    history, index), its index and its encoder.

    The routing state is computed once per champion version and stored under
    `<cache>/routing-state/`; every worker maps those files and the partner index read-only, so
    workers share one copy of the arrays. Raises ValueError when no such version is registered.
    """
    champion = version_by_alias(paths, model_name, alias)
    if champion is None:
        raise ValueError(
            f"no {model_name}@{alias} is registered in {paths.tracking_uri}: "
            "run `partnermatch serve` (trains one on the demo ecosystem) or `partnermatch train`"
        )
    return load_router_of(paths, champion, progress)


ROUTING_STATE_DIR = "routing-state"  # under the cache dir


def state_name(version: RegisteredVersion) -> str:
    """The name of a registered version's routing state (unique per version; it begins the state
    directory's name, and so the path of every file a worker maps for that version)."""
    return f"{version.name}-v{version.version}-{version.run_id}"


def load_router_of(paths: Paths, champion: RegisteredVersion, progress: Progress = SILENT) -> Router:
    """A Router over one registered version (win or team bundle; see `load_router`)."""
    progress.step(f"loading {champion.name} v{champion.version}")
    bundle_dir = local_bundle(paths, champion)
    bundle = ModelBundle.load(bundle_dir, with_history=False)
    index = PartnerIndex.load(bundle_dir / INDEX_DIR, mmap=True)
    set_search_threads(1)  # one query at a time: more OpenMP threads only add overhead
    encoder = _serving_encoder(bundle.manifest.encoder, paths.cache_dir)
    model_info = ModelInfo(name=champion.name, version=champion.version, encoder=bundle.manifest.encoder)
    settings = RoutingSettings()

    def build() -> RoutingState:
        progress.step("indexing the history and precomputing the history shortlists")
        full = ModelBundle.load(bundle_dir)
        router = Router(
            model=bundle.win_model,
            context=full.feature_context(),
            index=index,
            encoder=encoder,
            partners=full.history["partners"],
            history_deals=full.history["deals"],
            model_info=model_info,
            settings=settings,
        )
        return router.state

    directory = state_directory(paths.cache_dir / ROUTING_STATE_DIR, state_name(champion), settings)
    return Router.from_state(
        shared_routing_state(directory, build, bundle.win_model, index, encoder, model_info, settings)
    )


def live_router_of(paths: Paths, version: RegisteredVersion, store: FeedbackStore) -> LiveRouter:
    """A win model version's Router with the feedback its history does not hold yet layered on
    (`serving.feedback.LiveRouter`: built here, so a reload swaps in a router that is already live)."""
    return LiveRouter(load_router_of(paths, version), store, feedback_applied(version))


def serve_command(host: str, port: int) -> list[str]:
    """argv that serves this service with `bentoml serve` (from any working directory)."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bentoml", "serve", f"{__name__}:PartnerMatch"]
    return [*command, "--host", host, "--port", str(port), "--working-dir", str(root)]


# One request at a time per worker: a second OpenMP thread (LightGBM) saves little on a few hundred
# rows, and when the other core is busy its barrier waits cost ~8 ms per call (measured on 2 cores).
SERVE_ENVIRONMENT = {"OMP_NUM_THREADS": "1"}
SERVICE_NAME = "partnermatch"


def workers_environment(workers: int) -> dict[str, str]:
    """Environment for `bentoml serve` to run `workers` processes of the service (BentoML lays
    `BENTOML_CONFIG_OVERRIDES` over the `@bentoml.service` settings). They share the mapped arrays."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {SERVICE_NAME: {"workers": workers}}})}


def read_route_request(path: Path) -> RouteRequest:
    """A JSON file holding a deal, or a whole request `{"deal": ..., "options": ...}`.

    Raises FileNotFoundError, or ValueError (pydantic's ValidationError is one) naming the problem.
    """
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path} must hold a JSON object (a deal, or {{'deal': ..., 'options': ...}})")
    return RouteRequest.model_validate(payload if "deal" in payload else {"deal": payload})


def route_once(request: RouteRequest, paths: Paths, progress: Progress = SILENT) -> RouteResponse:
    """Route one request with the champion, outside the service, and log the decision like it."""
    router = load_router(paths, progress)
    response = router.route(request)
    log = DecisionLog(prepare_database(paths))
    try:
        record_decision(log, request.model_dump_json(), response)
    finally:
        log.close()
    return response


SERVE_TEAMS_ENV = "PARTNERMATCH_SERVE_TEAMS"  # "0": do not load the team model (POST /team answers 503)


def load_team_assembler(paths: Paths, progress: Progress = SILENT) -> TeamAssembler:
    """The team assembler over the registered champion of `partnermatch-team` (its routing state is
    stored and mapped like the win champion's). Raises ModelNotRegisteredError naming the command
    that trains one."""
    champion = version_by_alias(paths, REGISTERED_TEAM_MODEL, CHAMPION)
    if champion is None:
        raise ModelNotRegisteredError(
            f"no {REGISTERED_TEAM_MODEL}@{CHAMPION} is registered in {paths.tracking_uri}: "
            f"run `{TEAM_TRAINING_COMMAND}`"
        )
    return team_assembler_of(paths, champion, progress)


def team_assembler_of(paths: Paths, version: RegisteredVersion, progress: Progress = SILENT) -> TeamAssembler:
    """The team assembler over one registered version of `partnermatch-team`."""
    return TeamAssembler.from_bundle(load_router_of(paths, version, progress).state, local_bundle(paths, version))


@dataclass(frozen=True)
class ServedModels:
    """Every model a request may use, replaced as one value by a reload (`serving.reload.HotSwap`).
    None: no version is registered (or, for `teams`, served: `teams_missing` says why)."""

    win: Loaded[LiveRouter]
    shadow_alias: str | None  # the alias `PARTNERMATCH_SHADOW` names; None: shadow mode is off
    shadow: Loaded[Shadow] | None
    teams: Loaded[TeamAssembler] | None
    teams_missing: str
    ipp: Loaded[IppScorer] | None
    sentiment: Loaded[LoadedSentiment] | None
    health: Loaded[LoadedHealth] | None

    @property
    def router(self) -> Router:
        """The win champion's Router without live features (batch, why-not, the contract's vocabulary)."""
        return self.win.model.base

    def slots(self) -> dict[tuple[str, str], Loaded[Any] | None]:
        """(registered model name, alias) -> what is loaded for it, win first."""
        shadow = {} if self.shadow_alias is None else {(REGISTERED_WIN_MODEL, self.shadow_alias): self.shadow}
        return {
            (REGISTERED_WIN_MODEL, CHAMPION): self.win,
            **shadow,
            (REGISTERED_TEAM_MODEL, CHAMPION): self.teams,
            (REGISTERED_IPP_MODEL, CHAMPION): self.ipp,
            (REGISTERED_SENTIMENT_MODEL, CHAMPION): self.sentiment,
            (REGISTERED_HEALTH_MODEL, CHAMPION): self.health,
        }

    def loaded(self) -> list[Loaded[Any]]:
        """The models loaded, win first."""
        return [model for model in self.slots().values() if model is not None]


def load_served(
    paths: Paths, store: FeedbackStore, decisions: DecisionLog, previous: ServedModels | None = None
) -> ServedModels:
    """The models the registry's aliases name now; from `previous`, whatever has not changed is kept
    as it is and only the rest is loaded (a new win or shadow version gets the live feedback its
    history lacks before it is returned). Raises ValueError when no win champion is registered,
    RegistryError when the registry cannot be read, and what a model's loading raises."""

    live_routers = [] if previous is None else [(previous.win.version, previous.win.model)]
    if previous is not None and previous.shadow is not None:
        live_routers.append((previous.shadow.version, previous.shadow.model.live))

    def live_of(version: RegisteredVersion) -> LiveRouter:
        # A shadow promoted to champion (or the reverse) is loaded and live already.
        for loaded_version, router in live_routers:
            if same_version(loaded_version, version):
                return router
        return live_router_of(paths, version, store)

    def live(version: RegisteredVersion) -> Loaded[LiveRouter]:
        router = live_of(version)
        return loaded(paths, version, CHAMPION, router, router.base.model_info.encoder)

    def shadow_of(alias: str) -> Callable[[RegisteredVersion], Loaded[Shadow]]:
        def load(version: RegisteredVersion) -> Loaded[Shadow]:
            router = live_of(version)
            return loaded(paths, version, alias, Shadow(router, decisions), router.base.model_info.encoder)

        return load

    def teams(version: RegisteredVersion) -> Loaded[TeamAssembler]:
        assembler = team_assembler_of(paths, version)
        return loaded(paths, version, CHAMPION, assembler, assembler.model_info.encoder)

    def sentiment(version: RegisteredVersion) -> Loaded[LoadedSentiment]:
        model = sentiment_of(paths, version)
        return loaded(paths, version, CHAMPION, model, model.model.encoder_name)

    def health(version: RegisteredVersion) -> Loaded[LoadedHealth]:
        return loaded(paths, version, CHAMPION, health_of(paths, version), None)

    def champion(model_name: str) -> RegisteredVersion | None:
        return version_by_alias(paths, model_name, CHAMPION)

    win = refreshed(previous.win if previous else None, champion(REGISTERED_WIN_MODEL), live)
    if win is None:
        raise ValueError(
            f"no {REGISTERED_WIN_MODEL}@{CHAMPION} is registered in {paths.tracking_uri}: "
            "run `partnermatch serve` (trains one on the demo ecosystem) or `partnermatch train`"
        )
    router = win.model.base

    def ipp_encoder(name: str) -> Encoder:
        # The router's encoder when it is the one asked for: one copy in memory.
        return router.encoder if router.encoder.name == name else _serving_encoder(name, paths.cache_dir)

    def ipp(version: RegisteredVersion) -> Loaded[IppScorer]:
        scorer = ipp_scorer_of(paths, version, ipp_encoder)
        return loaded(paths, version, CHAMPION, scorer, scorer.model_info.encoder)

    alias = shadow_alias()
    shadow = None
    if alias is not None:
        challenger = version_by_alias(paths, REGISTERED_WIN_MODEL, alias)
        shadow = refreshed(previous.shadow if previous else None, challenger, shadow_of(alias))
        if shadow is None and (previous is None or previous.shadow is not None):
            logger.warning(
                "%s=%s but no %s@%s is registered: no shadow", SHADOW_ENV, alias, REGISTERED_WIN_MODEL, alias
            )
    served_teams, teams_missing = None, f"the team model is not served ({SERVE_TEAMS_ENV}=0)"
    if os.environ.get(SERVE_TEAMS_ENV, "1") != "0":
        teams_missing = f"no {REGISTERED_TEAM_MODEL}@{CHAMPION} is registered: run `{TEAM_TRAINING_COMMAND}`"
        served_teams = refreshed(previous.teams if previous else None, champion(REGISTERED_TEAM_MODEL), teams)
        if served_teams is None and (previous is None or previous.teams is not None):
            logger.warning("POST /team answers 503: %s", teams_missing)
    return ServedModels(
        win=win,
        shadow_alias=alias,
        shadow=shadow,
        teams=served_teams,
        teams_missing=teams_missing,
        ipp=refreshed(previous.ipp if previous else None, champion(REGISTERED_IPP_MODEL), ipp),
        sentiment=refreshed(previous.sentiment if previous else None, champion(REGISTERED_SENTIMENT_MODEL), sentiment),
        health=refreshed(previous.health if previous else None, champion(REGISTERED_HEALTH_MODEL), health),
    )


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; ValueError (or FileNotFoundError) naming the file otherwise."""
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return payload


def read_team_request(path: Path) -> TeamRequest:
    """A JSON file holding a deal, or a whole request `{"deal": ..., "options": ...}` of `POST /team`."""
    payload = _json_object(path)
    return TeamRequest.model_validate(payload if "deal" in payload else {"deal": payload})


def read_batch_request(path: Path) -> BatchRouteRequest:
    """A JSON file holding the body of `POST /route/batch`: `{"deals": [...], "options": {...}}`."""
    return BatchRouteRequest.model_validate(_json_object(path))


# The API: its operations (statuses each can answer besides 200), who may call what, body limit.
MAX_BODY_BYTES = 1_048_576  # the largest valid request (10,000 excluded ids, a 10,000-character text) is ~200 KB
_ALWAYS = (401, 403, 429, 500, 503)
OPERATIONS = (
    Operation("/route", "post", "RouteResponse", (400, *_ALWAYS, 404, 409, 413, 415, 422), Scope.ROUTE, "RouteRequest"),
    Operation("/decisions/{decision_id}", "get", "DecisionRecord", (*_ALWAYS, 404), Scope.READ_DECISIONS),
    Operation(
        "/feedback", "post", "FeedbackResponse", (*_ALWAYS, 404, 409, 413, 415, 422), Scope.FEEDBACK, "FeedbackRequest"
    ),
    Operation("/ipp_fit", "post", "IppFitResponse", (*_ALWAYS, 413, 415, 422), Scope.IPP, "IppFitRequest", False),
    Operation("/white_space", "get", "WhiteSpaceResponse", _ALWAYS, Scope.IPP),
    Operation("/team", "post", "TeamResponse", (400, *_ALWAYS, 404, 409, 413, 415, 422), Scope.TEAM, "TeamRequest"),
    Operation(
        "/route/batch",
        "post",
        "BatchRouteResponse",
        (*_ALWAYS, 404, 409, 413, 415, 422),
        Scope.ROUTE,
        "BatchRouteRequest",
        False,
    ),
    Operation(
        "/route/why_not",
        "post",
        "WhyNotResponse",
        (*_ALWAYS, 404, 409, 413, 415, 422),
        Scope.ROUTE,
        "WhyNotRequest",
        False,
    ),
    Operation(
        "/sentiment",
        "post",
        "SentimentResponse",
        (*_ALWAYS, 413, 415, 422),
        Scope.SENTIMENT,
        "SentimentRequest",
        idempotency_key=False,
    ),
    Operation(
        "/partner_health",
        "post",
        "PartnerHealthResponse",
        (*_ALWAYS, 404, 413, 415, 422),
        Scope.HEALTH,
        "PartnerHealthRequest",
        idempotency_key=False,
    ),
    Operation("/partners/{partner_id}/kpis", "get", "PartnerKpis", (*_ALWAYS, 404), Scope.HEALTH),
    Operation("/partners/at_risk", "get", "AtRiskResponse", _ALWAYS, Scope.HEALTH),
    Operation("/partners/cohorts", "get", "CohortsResponse", _ALWAYS, Scope.HEALTH),
    Operation("/partners/{partner_id}/trends", "get", "PartnerTrends", (*_ALWAYS, 404), Scope.HEALTH),
    Operation("/models", "get", "ModelsResponse", _ALWAYS, Scope.READ_MODELS),
    Operation("/admin/reload", "post", "ReloadResponse", _ALWAYS, Scope.ADMIN),
)
# Reached only by the service itself (`serving.asgi.internal_token`): the adaptive batch of /sentiment.
SENTIMENT_BATCH_ROUTE = "/sentiment/batch"
# BentoML's latency budget for a batched call: requests it predicts would exceed it get 503, so it
# must cover a full batch of MAX_SENTIMENT_TEXTS texts on a busy CPU (~0.2-0.5 s); the dispatcher's
# learned wait stays short at low traffic (at 20 ms, 4 clients sending 32 texts each got 503s).
SENTIMENT_BATCH_LATENCY_MS = 2000
ACCESS = AccessPolicy(
    public_paths=frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/"}),
    public_prefixes=("/static_content", "/assets", WEB_PREFIX),  # the Swagger UI's files, the recruiters' page
    scoped_prefixes=(
        ("/route", Scope.ROUTE),
        ("/decisions", Scope.READ_DECISIONS),
        ("/feedback", Scope.FEEDBACK),
        ("/ipp_fit", Scope.IPP),
        ("/white_space", Scope.IPP),
        ("/team", Scope.TEAM),
        ("/sentiment", Scope.SENTIMENT),
        ("/partner_health", Scope.HEALTH),
        ("/partners", Scope.HEALTH),
        ("/models", Scope.READ_MODELS),
        ("/admin", Scope.ADMIN),
    ),
)


class OpenAPIDocument:
    """What BentoML serves at `/docs.json` (it calls `asdict()`)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def asdict(self) -> dict[str, Any]:
        return self.document


def _loaded_vocabulary() -> Vocabulary | None:
    """The vocabulary of the model this worker serves; None before it is loaded."""
    try:
        instance = bentoml.get_current_service()
    except BentoMLException:
        return None
    served = isinstance(instance, cast("bentoml.Service[PartnerMatch]", PartnerMatch).inner)
    return Vocabulary.of(instance.router.context) if served else None


class ContractService(bentoml.Service):
    """Serves `serving.contract.api_document` instead of BentoML's own document."""

    @property
    def openapi_spec(self) -> Any:
        base = super().openapi_spec.asdict()
        base["paths"].pop(SENTIMENT_BATCH_ROUTE, None)  # internal: not part of the API
        return OpenAPIDocument(
            api_document(base, OPERATIONS, ACCESS.public_paths, _loaded_vocabulary(), MAX_BODY_BYTES)
        )


RETRY = {"Retry-After": "1"}  # a store that is briefly unavailable


def _answer(ctx: bentoml.Context, status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    # BentoML applies the context's status code to a returned Response too.
    ctx.response.status_code = status
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _unavailable(ctx: bentoml.Context, stores: str, version: str) -> Response:
    """503 with Retry-After: a store is locked or unreachable (logged by the caller); a retry may succeed."""
    return _answer(ctx, 503, error_json("server", f"{stores} is unavailable; retry later", version), RETRY)


decisions_app = FastAPI(title="decisions")
# GET /white_space and GET /models; mounted at the root (a mount at /models would answer only the paths
# below it), BentoML's mount answers only the paths of its routes.
root_app = FastAPI(title="root", docs_url=None, redoc_url=None, openapi_url=None)
partners_app = FastAPI(title="partners")
admin_app = FastAPI(title="admin", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(admin_app, path="/admin")
@bentoml.asgi_app(partners_app, path="/partners")
@bentoml.asgi_app(decisions_app, path="/decisions")
@bentoml.asgi_app(root_app, path="/")
@bentoml.service(name=SERVICE_NAME, service_class=ContractService, workers=1, traffic={"timeout": 60})
class PartnerMatch:
    """Partner routing: the champion win model over a FAISS partner index, with a decision log."""

    def __init__(self) -> None:
        paths = Paths.from_environment()
        self.paths = paths
        self.decisions = DecisionLog(_service_database())
        self.feedback_store = FeedbackStore(_service_database())
        self.models = HotSwap(lambda previous: load_served(paths, self.feedback_store, self.decisions, previous))
        self.models.poll_every(reload_seconds())
        self.prospect_lists = ProspectListStore(sqlite_url(prospect_lists_beside(decision_log_path(paths))))
        self._own_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def router(self) -> Router:
        """The current win champion's Router (no live features): read it once per request."""
        return self.models.current.router

    @bentoml.api(route="/route", input_spec=RouteRequest, output_spec=RouteResponse)
    def route(self, deal: DealIn, options: RouteOptions, ctx: bentoml.Context) -> Response:
        """Rank partners for a deal: calibrated win probabilities, reasons, constraints, channel conflict."""
        request = RouteRequest(deal=deal, options=options)
        models = self.models.current  # this request's models, even if a reload swaps others in meanwhile
        live = models.win.model  # its current() reads the feedback store: inside _decide's error handling
        decided = self._decide(ctx, live.base.model_info.version, request, lambda body: live.current().route(body))
        if isinstance(decided, Response):
            return decided
        if models.shadow is not None and not decided.replayed:
            models.shadow.model.answer(request, decided.response_json)
        return self._decided(ctx, decided)

    def _decide(
        self, ctx: bentoml.Context, version: str, request: RequestT, decide: Callable[[RequestT], DecisionResponse]
    ) -> Decided | Response:
        """Decide and log once per retry (`serving.idempotency`), or the error response."""
        try:
            owner = caller(ctx.request.scope).key_id
            request_json = request.model_dump_json()
            header = ctx.request.headers.get(IDEMPOTENCY_HEADER)
            retry = retry_claim(owner, header, request.deal.deal_id, request_json, datetime.now(UTC))
            return decide_once(self.decisions, request, request_json, retry, decide)
        except FeatureError as error:
            return _answer(ctx, status_of(error), error_json(error.field, error.reason, version))
        except SolverError as error:
            logger.exception("the MILP solver failed")
            return _answer(ctx, 503, error_json("server", str(error), version), RETRY)
        except UNAVAILABLE_ERRORS:
            logger.exception("the database could not be read or written")
            return _unavailable(ctx, "the database", version)

    @staticmethod
    def _decided(ctx: bentoml.Context, decided: Decided) -> Response:
        headers = {REPLAYED_HEADER: "true"} if decided.replayed else None
        return _answer(ctx, 200, decided.response_json.encode(), headers)

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    def feedback(self, event_id: str, event: OutcomeIn | EngagementIn, ctx: bentoml.Context) -> Response:
        """Record a CRM outcome (won/lost, partner or team) or engagement event; live features count it."""
        request = FeedbackRequest(event_id=event_id, event=event)
        live = self.models.current.win.model
        version = live.base.model_info.version
        try:
            accepted = accept_feedback(request, self.feedback_store, self.decisions, live, datetime.now(UTC))
        except FeatureError as error:
            return _answer(ctx, status_of(error), error_json(error.field, error.reason, version))
        except UNAVAILABLE_ERRORS:
            logger.exception("the database could not be read or written")
            return _unavailable(ctx, "the database", version)
        return _answer(ctx, 200, accepted.model_dump_json().encode())

    @bentoml.api(route="/team", input_spec=TeamRequest, output_spec=TeamResponse)
    def team(self, deal: DealIn, options: TeamOptions, ctx: bentoml.Context) -> Response:
        """Assemble partner teams covering every product of a deal: members, credit, win probability, reasons."""
        models = self.models.current
        if models.teams is None:
            return _answer(ctx, 503, error_json("model", models.teams_missing))
        teams, request = models.teams.model, TeamRequest(deal=deal, options=options)
        decided = self._decide(ctx, teams.model_info.version, request, lambda body: assemble(teams, body))
        return decided if isinstance(decided, Response) else self._decided(ctx, decided)

    @bentoml.api(route="/route/batch", input_spec=BatchRouteRequest, output_spec=BatchRouteResponse)
    def route_batch(self, deals: list[RouteRequest], options: BatchOptions, ctx: bentoml.Context) -> Response:
        """Route many deals at once under partner capacities: global plan vs greedy routing, exposure."""
        request, live = BatchRouteRequest(deals=deals, options=options), self.models.current.win.model
        return self._pure(ctx, live.base.model_info.version, lambda: route_batch(live.current(), request))

    @bentoml.api(route="/route/why_not", input_spec=WhyNotRequest, output_spec=WhyNotResponse)
    def why_not(self, deal: DealIn, options: RouteOptions, partner_id: str, ctx: bentoml.Context) -> Response:
        """Why a partner is not in a deal's top k: the constraint that removed it, or the features behind it."""
        # The live router, as /route ranks: the answer explains the ranking the CRM saw.
        request, live = WhyNotRequest(deal=deal, options=options, partner_id=partner_id), self.models.current.win.model
        return self._pure(ctx, live.base.model_info.version, lambda: explain_why_not(live.current(), request))

    def _pure(self, ctx: bentoml.Context, version: str, handle: Callable[[], BaseModel]) -> Response:
        """Answer with `handle()`'s response, or its domain error in the one error shape."""
        try:
            return _answer(ctx, 200, handle().model_dump_json().encode())
        except FeatureError as error:
            return _answer(ctx, status_of(error), error_json(error.field, error.reason, version))
        except SolverError as error:
            logger.exception("the MILP solver failed")
            return _answer(ctx, 503, error_json("server", str(error), version), RETRY)
        except UNAVAILABLE_ERRORS:
            logger.exception("the database could not be read")
            return _unavailable(ctx, "the database", version)

    @decisions_app.get("/{decision_id}", response_model=DecisionRecord)
    def decision(self, decision_id: str) -> DecisionRecord | Response:
        """A logged decision: the request, the response and the model version that answered."""
        logged = self.decisions.get(decision_id)
        if logged is None:
            body = error_json("decision_id", f"no decision {decision_id!r} is logged", self.router.model_info.version)
            return Response(body, status_code=404, media_type="application/json")
        team = logged.model_name == REGISTERED_TEAM_MODEL
        response = (TeamResponse if team else RouteResponse).model_validate_json(logged.response_json)
        return DecisionRecord(
            decision_id=logged.decision_id,
            logged_at=logged.logged_at,
            model=response.model,
            request=(TeamRequest if team else RouteRequest).model_validate_json(logged.request_json),
            response=response,
        )

    @bentoml.api(route="/ipp_fit", input_spec=IppFitRequest, output_spec=IppFitResponse)
    def ipp_fit(self, prospects: list[ProspectIn], keep: bool, ctx: bentoml.Context) -> Response:
        """Ideal-partner fit of one prospect or a batch: fit score 0-100, percentile among current partners,
        nearest top performers as evidence, attributes that raise and lower the score, white-space cells
        it would fill, expected days to a first win. `keep: true` keeps the batch for `GET /white_space`."""
        served = self.models.current.ipp
        if served is None:
            return _answer(ctx, 503, error_json("model", MISSING_MODEL_REASON))
        scorer, request = served.model, IppFitRequest(prospects=prospects, keep=keep)
        version = scorer.model_info.version
        try:
            response = scorer.fit(request)
            if keep:
                self.prospect_lists.keep(caller(ctx.request.scope).key_id, scorer.kept_list(request, response))
        except FeatureError as error:
            return _answer(ctx, status_of(error), error_json(error.field, error.reason, version))
        except SQLAlchemyError:
            logger.exception("the prospect-list store could not be written")
            return _answer(ctx, 503, error_json("server", "the prospect-list store is unavailable", version), RETRY)
        return _answer(ctx, 200, response.model_dump_json().encode())

    @root_app.get("/white_space", response_model=WhiteSpaceResponse)
    def white_space(self, request: Request) -> WhiteSpaceResponse | Response:
        """White space: product x region cells ranked by unmet demand, each with the profile of the partner
        to recruit there and the caller's kept prospects (`POST /ipp_fit` with `keep: true`) that would fill it."""
        served = self.models.current.ipp
        if served is None:
            return Response(error_json("model", MISSING_MODEL_REASON), status_code=503, media_type="application/json")
        try:
            kept = self.prospect_lists.get(caller(request.scope).key_id)
        except SQLAlchemyError:
            logger.exception("the prospect-list store could not be read")
            body = error_json("server", "the prospect-list store is unavailable", served.model.model_info.version)
            return Response(body, status_code=503, media_type="application/json", headers=RETRY)
        return served.model.white_space(kept)

    @bentoml.api(
        route=SENTIMENT_BATCH_ROUTE,
        batchable=True,
        max_batch_size=MAX_SENTIMENT_TEXTS,
        max_latency_ms=SENTIMENT_BATCH_LATENCY_MS,
    )
    def sentiment_batch(self, texts: list[str]) -> list[list[float]]:
        """Texts of concurrent /sentiment requests, stacked by BentoML's adaptive batching: per text the
        class probabilities and frustration (`serving.health.sentiment_rows`)."""
        served = self.models.current.sentiment
        if served is None:
            raise RuntimeError("sentiment_batch is called only when a sentiment model is loaded")
        return sentiment_rows(served.model.model, texts)

    def _own_http(self) -> httpx.AsyncClient:
        """A client of this service's own ASGI app (the one BentoML gives its self-proxy), carrying the
        internal credential; one per event loop, as a client belongs to the loop it first ran in."""
        loop = asyncio.get_running_loop()
        client = self._own_clients.get(loop)
        if client is None:
            app = cast(Any, self).to_async.app
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://partnermatch.internal",
                headers={INTERNAL_HEADER: internal_token()},
                timeout=60.0,
            )
            self._own_clients[loop] = client
        return client

    @bentoml.api(route="/sentiment", input_spec=SentimentRequest, output_spec=SentimentResponse)
    async def sentiment(self, texts: list[str], ctx: bentoml.Context) -> Response:
        """Sentiment label, calibrated class probabilities and frustration of each text."""
        served = self.models.current.sentiment
        if served is None:
            return _answer(
                ctx, 503, error_json("model", missing_model_reason(REGISTERED_SENTIMENT_MODEL, TRAIN_SENTIMENT))
            )
        # Through the service's own HTTP app, so that BentoML batches concurrent requests together.
        answer = await self._own_http().post(SENTIMENT_BATCH_ROUTE, json={"texts": texts})
        answer.raise_for_status()
        rows = answer.json()
        body = sentiment_response(served.model.served, rows).model_dump_json().encode()
        return _answer(ctx, 200, body)

    @bentoml.api(route="/partner_health", input_spec=PartnerHealthRequest, output_spec=PartnerHealthResponse)
    def partner_health(self, partner_ids: list[str], ctx: bentoml.Context) -> Response:
        """Health score, band, 90-day disengagement probability, reasons and trends per partner."""
        served = self.models.current.health
        if served is None:
            return _answer(ctx, 503, error_json("model", missing_model_reason(REGISTERED_HEALTH_MODEL, TRAIN_HEALTH)))
        health = served.model
        try:
            body = health_response(health, partner_ids).model_dump_json().encode()
        except UnknownPartnersError as error:
            return _answer(ctx, health_status(error), error_json(error.field, error.reason, health.served.version))
        return _answer(ctx, 200, body)

    def _no_health_model(self) -> Response:
        body = error_json("model", missing_model_reason(REGISTERED_HEALTH_MODEL, TRAIN_HEALTH))
        return Response(body, status_code=503, media_type="application/json")

    @partners_app.get("/at_risk", response_model=AtRiskResponse)
    def partners_at_risk(self) -> AtRiskResponse | Response:
        """The partners most likely to disengage in the next 90 days, with reasons (the health view)."""
        served = self.models.current.health
        return self._no_health_model() if served is None else at_risk_response(served.model)

    @partners_app.get("/cohorts", response_model=CohortsResponse)
    def partner_cohorts(self) -> CohortsResponse | Response:
        """Time to competency (joining to the first won deal) by join quarter."""
        served = self.models.current.health
        return self._no_health_model() if served is None else cohorts_response(served.model)

    @partners_app.get("/{partner_id}/trends", response_model=PartnerTrends)
    def partner_trends(self, partner_id: str) -> PartnerTrends | Response:
        """Monthly engagement and message sentiment of a partner over the last year."""
        return self._of_partner(partner_id, trends_response)

    @partners_app.get("/{partner_id}/kpis", response_model=PartnerKpis)
    def partner_kpis(self, partner_id: str) -> PartnerKpis | Response:
        """Programme KPIs of a partner: win rate, pipeline, revenue, time to competency, tier recommendation."""
        return self._of_partner(partner_id, kpi_response)

    def _of_partner(self, partner_id: str, answer: Callable[[LoadedHealth, str], BaseModelT]) -> BaseModelT | Response:
        """`answer(health model, partner_id)`, or 503 without a health model, 404 for an unknown partner."""
        served = self.models.current.health
        if served is None:
            return self._no_health_model()
        try:
            return answer(served.model, partner_id)
        except UnknownPartnersError as error:
            body = error_json("partner_id", error.reason, served.model.served.version)
            return Response(body, status_code=health_status(error), media_type="application/json")

    @root_app.get("/models", response_model=ModelsResponse)
    def models_list(self) -> ModelsResponse | Response:
        """Each registered model this service loaded: version, alias, encoder, training window, drift."""
        models = self.models.current
        try:
            statuses = model_statuses(self.paths, models.loaded())
        except RegistryError as error:
            body = error_json("registry", one_line(error), models.router.model_info.version)
            return Response(body, status_code=503, media_type="application/json", headers=RETRY)
        return ModelsResponse(model=models.router.model_info, models=statuses)

    @admin_app.post("/reload", response_model=ReloadResponse)
    def reload(self) -> ReloadResponse | Response:
        """Load the versions the aliases name now, where they changed, and swap them all in at once."""
        try:
            before, after = self.models.reload()
        except (RegistryError, ValueError, OSError) as error:
            logger.exception("reloading the served models failed")
            body = error_json("models", one_line(error), self.router.model_info.version)
            return Response(body, status_code=503, media_type="application/json", headers=RETRY)
        changes = model_changes(before.slots(), after.slots())
        return ReloadResponse(model=after.router.model_info, reloaded=bool(changes), changes=changes)


# The decorators turned the class into a bentoml.Service (mypy sees the class); outermost first.
_service = cast("bentoml.Service[PartnerMatch]", PartnerMatch)
_service.add_asgi_middleware(JsonErrors)
_service.add_asgi_middleware(SwaggerAtDocs)
_service.add_asgi_middleware(
    ApiKeyAuth, policy=ACCESS, open_store=_service_key_store, internal_paths=frozenset({SENTIMENT_BATCH_ROUTE})
)
_service.add_asgi_middleware(
    BodyLimits,
    paths=frozenset(
        {"/route", "/feedback", "/ipp_fit", "/team", "/route/batch", "/route/why_not", "/sentiment", "/partner_health"}
    ),
    max_bytes=MAX_BODY_BYTES,
)
_service.mount_asgi_app(web_app, path=WEB_PREFIX)
