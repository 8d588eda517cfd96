"""The API contract: the OpenAPI 3.1 document the service serves at `/docs.json`.

BentoML writes a document from the service (its infrastructure endpoints, the mounted FastAPI app's
paths, IO schemas); `api_document` rewrites it so that it tells the truth:
- request and response bodies are the pydantic models' own JSON schemas (nullable fields included);
- every status an operation can answer is listed, each error with the one `ErrorResponse` body;
- the API key schemes (`Authorization: Bearer`, `X-API-Key`), and the scope each operation needs;
- the loaded model's vocabularies (regions, products) and the certification levels as enums, so a
  client generated from the document sends only values the service accepts;
- the `Idempotency-Key` request header, the `Idempotent-Replayed` and `Retry-After` answer headers,
  and the body size limit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic.json_schema import models_json_schema

from features.pairs import FeatureContext
from features.schema import CERT_LEVELS, MAX_CERT_LEVEL
from serving.errors import ERROR_STATUSES
from serving.health_schemas import (
    AtRiskResponse,
    CohortsResponse,
    PartnerHealthRequest,
    PartnerHealthResponse,
    PartnerKpis,
    PartnerTrends,
    SentimentRequest,
    SentimentResponse,
)
from serving.idempotency import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY_CHARS, REPLAY_WINDOW, REPLAYED_HEADER
from serving.ipp_schemas import IppFitRequest, IppFitResponse, WhiteSpaceResponse
from serving.keys import Scope
from serving.schemas import (
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelsResponse,
    ReloadResponse,
    RouteRequest,
    RouteResponse,
)
from serving.team_schemas import (
    BatchRouteRequest,
    BatchRouteResponse,
    DecisionRecord,
    TeamRequest,
    TeamResponse,
    WhyNotRequest,
    WhyNotResponse,
)

REF = "#/components/schemas/{model}"
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: <API key>`"},
}
# BentoML's and FastAPI's own error and IO schemas, replaced by ours.
_REPLACED_SCHEMAS = (
    "InvalidArgument",
    "NotFound",
    "InternalServerError",
    "TaskStatusResponse",
    "HTTPValidationError",
    "ValidationError",
    "RouteRequestIODescriptor",
    "RouteResponseIODescriptor",
    "FeedbackRequestIODescriptor",
    "FeedbackResponseIODescriptor",
    "TeamRequestIODescriptor",
    "TeamResponseIODescriptor",
    "BatchRouteRequestIODescriptor",
    "BatchRouteResponseIODescriptor",
    "WhyNotRequestIODescriptor",
    "WhyNotResponseIODescriptor",
    "SentimentRequestIODescriptor",
    "SentimentResponseIODescriptor",
    "PartnerHealthRequestIODescriptor",
    "PartnerHealthResponseIODescriptor",
)
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}


@dataclass(frozen=True)
class Vocabulary:
    """The values the loaded model knows: region and product names."""

    regions: tuple[str, ...]
    products: tuple[str, ...]

    @classmethod
    def of(cls, context: FeatureContext) -> Vocabulary:
        return cls(regions=tuple(context.regions), products=tuple(context.products))


@dataclass(frozen=True)
class Operation:
    """One operation of the API: where, what it answers with on success, its statuses, its scope."""

    path: str
    method: str  # lower case, as in the document
    success_schema: str  # component name of the 200 body
    statuses: tuple[int, ...]  # error statuses, each a key of ERROR_STATUSES
    scope: Scope
    takes_body: str | None = None  # component name of the JSON request body
    idempotency_key: bool = True  # with a body: takes an `Idempotency-Key` (false: a read-only scoring call)


def api_document(
    base: dict[str, Any],
    operations: tuple[Operation, ...],
    public_paths: frozenset[str],
    vocabulary: Vocabulary | None,
    max_body_bytes: int,
) -> dict[str, Any]:
    """`base` (BentoML's document as a dict) rewritten as the module docstring says. `public_paths`:
    the documented paths that need no key; `vocabulary`: None before a model is loaded."""
    document = copy.deepcopy(base)
    document["openapi"] = "3.1.0"  # pydantic 2 writes JSON Schema 2020-12, the dialect of OpenAPI 3.1
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _REPLACED_SCHEMAS:
        schemas.pop(name, None)
    _, definitions = models_json_schema(
        [
            (RouteRequest, "validation"),
            (RouteResponse, "serialization"),
            (DecisionRecord, "serialization"),
            (ErrorResponse, "serialization"),
            (FeedbackRequest, "validation"),
            (FeedbackResponse, "serialization"),
            (IppFitRequest, "validation"),
            (IppFitResponse, "serialization"),
            (WhiteSpaceResponse, "serialization"),
            (TeamRequest, "validation"),
            (TeamResponse, "serialization"),
            (BatchRouteRequest, "validation"),
            (BatchRouteResponse, "serialization"),
            (WhyNotRequest, "validation"),
            (WhyNotResponse, "serialization"),
            (SentimentRequest, "validation"),
            (SentimentResponse, "serialization"),
            (PartnerHealthRequest, "validation"),
            (PartnerHealthResponse, "serialization"),
            (PartnerKpis, "serialization"),
            (AtRiskResponse, "serialization"),
            (PartnerTrends, "serialization"),
            (CohortsResponse, "serialization"),
            (ModelsResponse, "serialization"),
            (ReloadResponse, "serialization"),
        ],
        ref_template=REF,
    )
    schemas.update(definitions["$defs"])
    components["securitySchemes"] = SECURITY_SCHEMES
    for path in public_paths & document["paths"].keys():
        for operation in document["paths"][path].values():
            operation["security"] = []
    for operation in operations:
        document["paths"][operation.path][operation.method] = _operation(
            document["paths"][operation.path].get(operation.method, {}), operation, max_body_bytes
        )
    _restrict_certification_levels(schemas)
    if vocabulary is not None:
        _restrict(schemas["DealIn"]["properties"]["region"], vocabulary.regions)
        _restrict(schemas["DealIn"]["properties"]["products"], vocabulary.products)
        _restrict(schemas["RouteOptions"]["properties"]["allowed_regions"], vocabulary.regions)
        _restrict(schemas["CertificationRequirement"]["properties"]["product"], vocabulary.products)
        _restrict(schemas["TeamOptions"]["properties"]["allowed_regions"], vocabulary.regions)
    return document


def _operation(generated: dict[str, Any], operation: Operation, max_body_bytes: int) -> dict[str, Any]:
    """The generated operation with our bodies, statuses, security and headers."""
    success: dict[str, Any] = {
        "description": "Successful Response",
        "content": {"application/json": {"schema": {"$ref": REF.format(model=operation.success_schema)}}},
    }
    result = {key: value for key, value in generated.items() if key not in ("responses", "requestBody")}
    result["description"] = f"{generated.get('description', '')}\n\nNeeds an API key with scope `{operation.scope}`."
    result["security"] = [{name: []} for name in SECURITY_SCHEMES]
    result["responses"] = {"200": success, **{str(status): _error(status) for status in operation.statuses}}
    if operation.takes_body is not None:
        result["requestBody"] = {
            "required": True,
            "description": f"JSON, at most {max_body_bytes:,} bytes.",
            "content": {"application/json": {"schema": {"$ref": REF.format(model=operation.takes_body)}}},
        }
    if operation.takes_body is not None and operation.idempotency_key:
        hours = int(REPLAY_WINDOW.total_seconds() // 3600)
        result["parameters"] = [
            *generated.get("parameters", []),
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": f"Retry safely: for {hours} h the same key and body answer the original decision; "
                "another body answers 409. Without it, the same `deal.deal_id` and body do the same.",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS},
            },
        ]
        success["headers"] = {
            REPLAYED_HEADER: {
                "description": "`true` when this is the original answer to an earlier, identical request.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    return result


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_STATUSES[status],
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
    return response


def _restrict_certification_levels(schemas: dict[str, Any]) -> None:
    level = schemas["CertificationRequirement"]["properties"]["min_level"]
    level["enum"] = list(range(1, MAX_CERT_LEVEL + 1))
    level["description"] = ", ".join(f"{index} {name}" for index, name in enumerate(CERT_LEVELS) if index) + "."


def _restrict(schema: dict[str, Any], values: tuple[str, ...]) -> None:
    """Make the strings of a property (itself, its array items, its non-null `anyOf` branches) an enum."""
    if schema.get("type") == "array":
        _restrict(schema["items"], values)
    elif schema.get("type") == "string":
        schema["enum"] = list(values)
    for branch in schema.get("anyOf", []):
        _restrict(branch, values)
