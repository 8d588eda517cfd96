"""The BentoML service: load the champion, call `serving.routing`, map domain errors to 4xx.

    bentoml serve serving.service:PartnerMatch      (what `partnermatch serve` runs)

Endpoints: `POST /route` (RouteRequest -> RouteResponse), `GET /decisions/{decision_id}`, Swagger UI
at `/docs` (and `/`) over the spec at `/docs.json`, and BentoML's `/healthz`, `/livez`, `/readyz`,
`/metrics` (Prometheus).

The model comes from the MLflow registry (`partnermatch-win@champion`, its bundle carries the
FAISS index and the history); paths come from the environment (`models.registry.Paths`), the
decision log from `PARTNERMATCH_DECISION_LOG` (default `<mlruns>/decisions.sqlite`).

Errors: BentoML answers a pydantic validation failure with 400; `ValidationErrorsAs422` turns it
into 422 with the failing field. Domain errors (`FeatureError` and its subclasses) become 422
(bad value), 404 (unknown partner) or 409 (constraints leave nobody), always with `field` and
`reason`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, cast

import attrs
import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.embed import CachedEncoder, Encoder, make_encoder
from features.index import PartnerIndex, set_search_threads
from features.pairs import FeatureError
from features.progress import SILENT, Progress
from models.bundle import INDEX_DIR, ModelBundle
from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, local_bundle, version_by_alias
from serving.decision_log import DecisionLog
from serving.routing import (
    Router,
    RoutingConflictError,
    RoutingSettings,
    UnknownPartnerError,
    shared_routing_state,
    state_directory,
)
from serving.routing.state import RoutingState
from serving.schemas import (
    DealIn,
    DecisionRecord,
    ErrorResponse,
    FieldProblem,
    ModelInfo,
    RouteOptions,
    RouteRequest,
    RouteResponse,
)

DECISION_LOG_ENV = "PARTNERMATCH_DECISION_LOG"


def decision_log_path(paths: Paths) -> Path:
    """Where decisions are logged: `$PARTNERMATCH_DECISION_LOG`, else `<mlruns>/decisions.sqlite`."""
    return Path(os.environ.get(DECISION_LOG_ENV) or paths.mlruns_dir / "decisions.sqlite")


# One worker serves one request at a time; two onnxruntime threads embed a deal's text in ~4.5 ms
# instead of ~6.5 ms on one (measured on 2 cores, 17-word texts).
SERVING_ENCODER_THREADS = 2


def _serving_encoder(name: str, cache_dir: Path) -> Encoder:
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
    progress.step(f"loading {REGISTERED_WIN_MODEL} v{champion.version}")
    bundle_dir = local_bundle(paths, champion)
    bundle = ModelBundle.load(bundle_dir, with_history=False)
    index = PartnerIndex.load(bundle_dir / INDEX_DIR, mmap=True)
    set_search_threads(1)  # one query at a time: more OpenMP threads only add overhead
    encoder = _serving_encoder(bundle.manifest.encoder, paths.cache_dir)
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


def _error_status(error: FeatureError) -> int:
    """HTTP status of a domain error: 404 unknown partner, 409 unsatisfiable request, else 422."""
    if isinstance(error, UnknownPartnerError):
        return 404
    if isinstance(error, RoutingConflictError):
        return 409
    return 422


def _error_body(problems: list[FieldProblem], model_version: str | None) -> ErrorResponse:
    first = problems[0]
    return ErrorResponse(
        error=f"{first.field}: {first.reason}",
        field=first.field,
        reason=first.reason,
        problems=problems,
        model_version=model_version,
    )


def _error_response(status: int, field: str, reason: str, model_version: str | None) -> JSONResponse:
    body = _error_body([FieldProblem(field=field, reason=reason)], model_version)
    return JSONResponse(body.model_dump(), status_code=status)


def record_decision(log: DecisionLog, request: RouteRequest, response: RouteResponse) -> None:
    """Append one decision (request, response, model) to the log."""
    log.append(
        response.decision_id,
        response.model.name,
        response.model.version,
        request.model_dump_json(),
        response.model_dump_json(),
    )


class ValidationErrorsAs422:
    """ASGI middleware: BentoML answers request-validation failures with 400 and pydantic's error
    list; rewrite those to 422 with the first failing field as a dotted path (`deal.amount`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def send_rewritten(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            if message.get("more_body", False):
                return
            body = b"".join(part.get("body", b"") for part in held[1:])
            rewritten = _as_422(body)
            start = held[0] if rewritten is None else _start_message(held[0], 422, len(rewritten))
            await send(start)
            await send({"type": "http.response.body", "body": body if rewritten is None else rewritten})

        await self.app(scope, receive, send_rewritten)


class SwaggerAtDocs:
    """ASGI middleware: BentoML serves its Swagger UI at `/`; serve the same page at `/docs` too (its
    relative asset and spec URLs resolve the same from there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs":
            scope = {**scope, "path": "/", "raw_path": b"/"}
        await self.app(scope, receive, send)


def _start_message(original: Message, status: int, length: int) -> Message:
    headers = [(key, value) for key, value in original.get("headers", []) if key.lower() != b"content-length"]
    return {**original, "status": status, "headers": [*headers, (b"content-length", str(length).encode())]}


def _as_422(body: bytes) -> bytes | None:
    """BentoML's validation-error body -> our 422 body; None when `body` is some other 400."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None
    errors = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    problems = [
        FieldProblem(
            field=".".join(str(part) for part in error.get("loc", ())) or "body",
            reason=str(error.get("msg", "invalid")),
        )
        for error in errors
    ]
    return _error_body(problems, model_version=None).model_dump_json().encode()


class OpenAPI31Service(bentoml.Service):
    """BentoML labels its spec OpenAPI 3.0.2, but pydantic 2 writes JSON Schema 2020-12 (nullable as
    `anyOf [..., {type: null}]`, numeric `exclusiveMinimum`), which is what OpenAPI 3.1 uses."""

    @property
    def openapi_spec(self) -> Any:
        return attrs.evolve(super().openapi_spec, openapi="3.1.0")


decisions_app = FastAPI(title="decisions")


@bentoml.asgi_app(decisions_app, path="/decisions")
@bentoml.service(name=SERVICE_NAME, service_class=OpenAPI31Service, workers=1, traffic={"timeout": 60})
class PartnerMatch:
    """Partner routing: the champion win model over a FAISS partner index, with a decision log."""

    def __init__(self) -> None:
        paths = Paths.from_environment()
        self.router = load_router(paths)
        self.decisions = DecisionLog(decision_log_path(paths))

    @bentoml.api(route="/route", input_spec=RouteRequest, output_spec=RouteResponse)
    def route(self, deal: DealIn, options: RouteOptions) -> RouteResponse | JSONResponse:
        """Rank partners for a deal: calibrated win probabilities, reasons, constraints, channel conflict."""
        request = RouteRequest(deal=deal, options=options)
        try:
            response = self.router.route(request)
        except FeatureError as error:
            return _error_response(_error_status(error), error.field, error.reason, self.router.model_info.version)
        record_decision(self.decisions, request, response)
        return response

    @decisions_app.get(
        "/{decision_id}",
        response_model=DecisionRecord,
        responses={404: {"model": ErrorResponse, "description": "No decision with this id."}},
    )
    def decision(self, decision_id: str) -> DecisionRecord | JSONResponse:
        """A logged decision: the request, the response and the model version that answered."""
        logged = self.decisions.get(decision_id)
        if logged is None:
            return _error_response(
                404, "decision_id", f"no decision {decision_id!r} is logged", self.router.model_info.version
            )
        response = RouteResponse.model_validate_json(logged.response_json)
        return DecisionRecord(
            decision_id=logged.decision_id,
            logged_at=logged.logged_at,
            model=response.model,
            request=RouteRequest.model_validate_json(logged.request_json),
            response=response,
        )


# The decorators turned the class into a bentoml.Service (mypy sees the class).
for _middleware in (ValidationErrorsAs422, SwaggerAtDocs):
    cast("bentoml.Service[PartnerMatch]", PartnerMatch).add_asgi_middleware(_middleware)
