"""The BentoML service: load the champion, wire the API's layers, map domain errors to statuses.

    bentoml serve serving.service:PartnerMatch      (what `partnermatch serve` runs)

Endpoints: `POST /route` (RouteRequest -> RouteResponse), `GET /decisions/{decision_id}`, Swagger UI
at `/docs` (and `/`) over the contract at `/docs.json` (`serving.contract`: OpenAPI 3.1 with the
loaded model's vocabularies), and BentoML's `/healthz`, `/livez`, `/readyz`, `/metrics` (Prometheus).

Every endpoint but the health probes, `/metrics` and the docs needs an API key with the endpoint's
scope (`serving.keys`, `serving.asgi.ApiKeyAuth`), within the key's rate limit. `POST /route` takes
an `Idempotency-Key` (`serving.idempotency`): a retry gets the original decision back.

The model comes from the MLflow registry (`partnermatch-win@champion`, its bundle carries the
FAISS index and the history); paths come from the environment (`models.registry.Paths`), the
decision log from `PARTNERMATCH_DECISION_LOG` (default `<mlruns>/decisions.sqlite`), the key store
from `PARTNERMATCH_API_KEYS` (default `api-keys.sqlite` beside the decision log).

Errors all have the one shape of `serving.errors` (statuses listed in `ERROR_STATUSES`).

`GET /models` (scope `read_models`) lists the loaded champion with its training window and drift
status; the champion is hot-reloaded (`serving.reload`): polled every `PARTNERMATCH_RELOAD_SECONDS`
(30; 0 off), or at once by `POST /admin/reload` (scope `admin`, in the worker it reaches).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI
from starlette.responses import Response

from features.embed import CachedEncoder, Encoder, make_encoder
from features.index import PartnerIndex, set_search_threads
from features.pairs import FeatureError
from features.progress import SILENT, Progress
from models.bundle import INDEX_DIR, ModelBundle
from models.registry import (
    CHAMPION,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
    RegistryError,
    local_bundle,
    one_line,
    version_by_alias,
)
from serving.asgi import ApiKeyAuth, BodyLimits, JsonErrors, SwaggerAtDocs, caller
from serving.contract import Operation, Vocabulary, api_document
from serving.decision_log import DecisionLog
from serving.errors import error_json, status_of
from serving.idempotency import IDEMPOTENCY_HEADER, REPLAYED_HEADER, decide_once, record_decision, retry_claim
from serving.keys import AccessPolicy, KeyStore, Scope, sqlite_url
from serving.models import served_models
from serving.reload import ServedChampion, reload_seconds
from serving.routing import Router, RoutingSettings, shared_routing_state, state_directory
from serving.routing.state import RoutingState
from serving.schemas import (
    DealIn,
    DecisionRecord,
    ModelInfo,
    ModelsResponse,
    ReloadResponse,
    RouteOptions,
    RouteRequest,
    RouteResponse,
)

logger = logging.getLogger(__name__)

DECISION_LOG_ENV = "PARTNERMATCH_DECISION_LOG"
KEY_STORE_ENV = "PARTNERMATCH_API_KEYS"
LOCAL_KEY_FILE = "api-key"


def decision_log_path(paths: Paths) -> Path:
    """Where decisions are logged: `$PARTNERMATCH_DECISION_LOG`, else `<mlruns>/decisions.sqlite`."""
    return Path(os.environ.get(DECISION_LOG_ENV) or paths.mlruns_dir / "decisions.sqlite")


def key_store_beside(decision_log: Path) -> Path:
    """The default key store of a decision log: `api-keys.sqlite` in the same directory."""
    return decision_log.parent / "api-keys.sqlite"


def key_store_path(paths: Paths) -> Path:
    """Where API keys are stored: `$PARTNERMATCH_API_KEYS`, else beside the decision log."""
    return Path(os.environ.get(KEY_STORE_ENV) or key_store_beside(decision_log_path(paths)))


def local_key_path(paths: Paths) -> Path:
    """The token of `partnermatch serve`'s local admin key: `api-key` beside the key store (mode 0600)."""
    return key_store_path(paths).parent / LOCAL_KEY_FILE


def open_key_store(paths: Paths | None = None, recheck_seconds: float = 0.0) -> KeyStore:
    """The key store of these paths (default: from the environment); see `KeyStore`."""
    return KeyStore(sqlite_url(key_store_path(paths or Paths.from_environment())), recheck_seconds)


# The service reads a key at most once a second: a revocation takes effect within a second, and most
# requests need no database read (~0.3-1 ms each through SQLAlchemy on 2 cores).
KEY_RECHECK_SECONDS = 1.0


def _service_key_store() -> KeyStore:
    return open_key_store(recheck_seconds=KEY_RECHECK_SECONDS)


# One worker serves one request at a time; two onnxruntime threads embed a deal's text in ~4.5 ms
# instead of ~6.5 ms on one (measured on 2 cores, 17-word texts).
SERVING_ENCODER_THREADS = 2


def serving_encoder(name: str, cache_dir: Path) -> Encoder:
    """The bundle's encoder without the on-disk embedding cache: a request's text is new, and a cache
    write per request would put an fsync on the latency path (and grow the cache without bound)."""
    encoder = make_encoder(name, cache_dir, threads=SERVING_ENCODER_THREADS)
    return encoder.inner if isinstance(encoder, CachedEncoder) else encoder


def load_router(paths: Paths, progress: Progress = SILENT) -> Router:
    """A Router over the registered champion of `partnermatch-win`, its index and its encoder.

    The routing state is computed once per champion version and stored under
    `<cache>/routing-state/`; every worker maps those files and the partner index read-only, so
    workers share one copy of the arrays. Raises ValueError when no champion is registered.
    """
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    if champion is None:
        raise ValueError(
            f"no {REGISTERED_WIN_MODEL}@{CHAMPION} is registered in {paths.tracking_uri}: "
            "run `partnermatch serve` (trains one on the demo ecosystem) or `partnermatch train`"
        )
    return load_router_of(paths, champion, progress)


def load_router_of(paths: Paths, champion: RegisteredVersion, progress: Progress = SILENT) -> Router:
    """A Router over one registered version of `partnermatch-win` (see `load_router`)."""
    progress.step(f"loading {REGISTERED_WIN_MODEL} v{champion.version}")
    bundle_dir = local_bundle(paths, champion)
    bundle = ModelBundle.load(bundle_dir, with_history=False)
    index = PartnerIndex.load(bundle_dir / INDEX_DIR, mmap=True)
    set_search_threads(1)  # one query at a time: more OpenMP threads only add overhead
    encoder = serving_encoder(bundle.manifest.encoder, paths.cache_dir)
    model_info = ModelInfo(name=REGISTERED_WIN_MODEL, version=champion.version, encoder=bundle.manifest.encoder)
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

    bundle_name = f"{champion.name}-v{champion.version}-{champion.run_id}"
    directory = state_directory(paths.cache_dir / "routing-state", bundle_name, settings)
    return Router.from_state(
        shared_routing_state(directory, build, bundle.win_model, index, encoder, model_info, settings)
    )


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
    log = DecisionLog(decision_log_path(paths))
    try:
        record_decision(log, request, response)
    finally:
        log.close()
    return response


# The API: its operations (statuses each can answer besides 200), who may call what, body limit.
MAX_BODY_BYTES = 1_048_576  # the largest valid request (10,000 excluded ids, a 10,000-character text) is ~200 KB
_ALWAYS = (401, 403, 429, 500, 503)
OPERATIONS = (
    Operation("/route", "post", "RouteResponse", (400, *_ALWAYS, 404, 409, 413, 415, 422), Scope.ROUTE, "RouteRequest"),
    Operation("/decisions/{decision_id}", "get", "DecisionRecord", (*_ALWAYS, 404), Scope.READ_DECISIONS),
    Operation("/models", "get", "ModelsResponse", _ALWAYS, Scope.READ_MODELS),
    Operation("/admin/reload", "post", "ReloadResponse", _ALWAYS, Scope.ADMIN),
)
ACCESS = AccessPolicy(
    public_paths=frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/"}),
    public_prefixes=("/static_content", "/assets"),  # the Swagger UI's files
    scoped_prefixes=(
        ("/route", Scope.ROUTE),
        ("/decisions", Scope.READ_DECISIONS),
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
        return OpenAPIDocument(
            api_document(base, OPERATIONS, ACCESS.public_paths, _loaded_vocabulary(), MAX_BODY_BYTES)
        )


def _answer(ctx: bentoml.Context, status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    # BentoML applies the context's status code to a returned Response too.
    ctx.response.status_code = status
    return Response(body, status_code=status, media_type="application/json", headers=headers)


decisions_app = FastAPI(title="decisions")
# Mounted at the root to answer exactly `/models` (a mount at /models answers only below it): BentoML's
# passive mount passes every other path on, and no docs routes of its own shadow the service's.
models_app = FastAPI(title="models", docs_url=None, redoc_url=None, openapi_url=None)
admin_app = FastAPI(title="admin")


@bentoml.asgi_app(admin_app, path="/admin")
@bentoml.asgi_app(models_app, path="/")
@bentoml.asgi_app(decisions_app, path="/decisions")
@bentoml.service(name=SERVICE_NAME, service_class=ContractService, workers=1, traffic={"timeout": 60})
class PartnerMatch:
    """Partner routing: the champion win model over a FAISS partner index, with a decision log."""

    def __init__(self) -> None:
        paths = Paths.from_environment()
        self.champion = ServedChampion(paths, load_router_of)
        self.champion.poll_every(reload_seconds())
        self.decisions = DecisionLog(decision_log_path(paths))

    @property
    def router(self) -> Router:
        """The current champion's Router (`serving.reload`): read it once per request."""
        return self.champion.current.router

    @bentoml.api(route="/route", input_spec=RouteRequest, output_spec=RouteResponse)
    def route(self, deal: DealIn, options: RouteOptions, ctx: bentoml.Context) -> Response:
        """Rank partners for a deal: calibrated win probabilities, reasons, constraints, channel conflict."""
        request = RouteRequest(deal=deal, options=options)
        router = self.router  # this request's model, even if a reload swaps in another meanwhile
        version = router.model_info.version
        try:
            owner = caller(ctx.request.scope).key_id
            retry = retry_claim(owner, ctx.request.headers.get(IDEMPOTENCY_HEADER), request, datetime.now(UTC))
            decided = decide_once(self.decisions, request, retry, router.route)
        except FeatureError as error:
            return _answer(ctx, status_of(error), error_json(error.field, error.reason, version))
        except sqlite3.OperationalError:
            logger.exception("the decision log could not be written")
            body = error_json("server", "the decision log is unavailable", version)
            return _answer(ctx, 503, body, {"Retry-After": "1"})
        headers = {REPLAYED_HEADER: "true"} if decided.replayed else None
        return _answer(ctx, 200, decided.response_json.encode(), headers)

    @decisions_app.get("/{decision_id}", response_model=DecisionRecord)
    def decision(self, decision_id: str) -> DecisionRecord | Response:
        """A logged decision: the request, the response and the model version that answered."""
        logged = self.decisions.get(decision_id)
        if logged is None:
            body = error_json("decision_id", f"no decision {decision_id!r} is logged", self.router.model_info.version)
            return Response(body, status_code=404, media_type="application/json")
        response = RouteResponse.model_validate_json(logged.response_json)
        return DecisionRecord(
            decision_id=logged.decision_id,
            logged_at=logged.logged_at,
            model=response.model,
            request=RouteRequest.model_validate_json(logged.request_json),
            response=response,
        )

    @models_app.get("/models", response_model=ModelsResponse)
    def models(self) -> ModelsResponse | Response:
        """Each registered model this service loaded: version, alias, encoder, training window, drift."""
        current = self.champion.current
        try:
            served = served_models(self.champion.paths, current)
        except RegistryError as error:
            body = error_json("registry", one_line(error), current.version.version)
            return Response(body, status_code=503, media_type="application/json", headers={"Retry-After": "1"})
        return ModelsResponse(model=current.router.model_info, models=served)

    @admin_app.post("/reload", response_model=ReloadResponse)
    def reload(self) -> ReloadResponse | Response:
        """Load the version `champion` names now, if it is not the one served, and swap it in."""
        try:
            outcome = self.champion.reload()
        except (RegistryError, ValueError, OSError) as error:
            logger.exception("reloading the champion failed")
            body = error_json("champion", one_line(error), self.champion.current.version.version)
            return Response(body, status_code=503, media_type="application/json", headers={"Retry-After": "1"})
        return ReloadResponse(
            model=outcome.current.router.model_info,
            reloaded=outcome.reloaded,
            previous_version=outcome.previous_version,
        )


# The decorators turned the class into a bentoml.Service (mypy sees the class); outermost first.
_service = cast("bentoml.Service[PartnerMatch]", PartnerMatch)
_service.add_asgi_middleware(JsonErrors)
_service.add_asgi_middleware(SwaggerAtDocs)
_service.add_asgi_middleware(ApiKeyAuth, policy=ACCESS, open_store=_service_key_store)
_service.add_asgi_middleware(BodyLimits, paths=frozenset({"/route"}), max_bytes=MAX_BODY_BYTES)
