"""The API contract (`/docs.json`) against the service: Schemathesis draws valid and invalid requests
for every operation from the served document and runs all its checks on each answer (status, content
type, headers and body conform, invalid data rejected, valid data accepted, auth enforced, 405 with
`Allow` for undocumented methods), in all its phases (examples, coverage, fuzzing, stateful).
`make fuzz` runs the same with 1,000 generated cases per operation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from schemathesis.engine import Status
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished

SMOKE_EXAMPLES = 30
FUZZ_EXAMPLES = 1000
API_OPERATIONS = (  # the others have no inputs to vary
    "POST /route",
    "GET /decisions/{decision_id}",
    "POST /team",
    "POST /route/batch",
    "POST /route/why_not",
)
INPUTLESS_OPERATIONS = ("GET /models", "POST /admin/reload")  # called at least once each


def run_schemathesis(schema: Any, token: str, examples: int) -> tuple[list[str], Counter[str]]:
    """Every phase and check of Schemathesis over the service app of `schema`; returns the failures
    found (one line each) and the requests sent per operation (`POST /route`: count)."""
    schema.config.update(headers={"Authorization": f"Bearer {token}"}, continue_on_failure=True)
    schema.config.generation.update(max_examples=examples, deterministic=True)
    failures: list[str] = []
    cases: Counter[str] = Counter()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, ScenarioFinished):
            cases[event.recorder.label] += len(event.recorder.interactions)
            failures.extend(
                _describe(event.recorder, case_id, check)
                for case_id, checks in event.recorder.checks.items()
                for check in checks
                if check.status in (Status.FAILURE, Status.ERROR)
            )
        elif isinstance(event, NonFatalError | FatalError):
            failures.append(f"{type(event).__name__}: {event}")
        elif isinstance(event, EngineFinished):
            failures.extend(str(failure) for failure in event.failures)
    return failures, cases


def _describe(recorder: Any, case_id: str, check: Any) -> str:
    """One failure: operation, check, what was sent and what came back."""
    interaction = recorder.interactions.get(case_id)
    sent = received = ""
    if interaction is not None:
        sent = f"{interaction.request.headers} {interaction.request.body!r}"[:600]
        if interaction.response is not None:
            received = f"{interaction.response.status_code} {interaction.response.content[:300]!r}"
    title = check.failure_info.failure.title if check.failure_info else "error"
    return f"{recorder.label} {check.name}: {title}; sent {sent}; got {received}"


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML's /metrics in process needs a Prometheus multiprocess directory (`bentoml serve` makes one)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))


@pytest.mark.usefixtures("metrics_dir")
def test_every_operation_keeps_the_contract(served_schema: Any, admin_token: str) -> None:
    failures, cases = run_schemathesis(served_schema, admin_token, SMOKE_EXAMPLES)
    print(f"schemathesis: {dict(cases)}, {len(failures)} failures")
    assert not failures, "\n".join(failures)
    assert min(cases[operation] for operation in API_OPERATIONS) >= SMOKE_EXAMPLES
    assert min(cases[operation] for operation in INPUTLESS_OPERATIONS) >= 1


@pytest.mark.slow
@pytest.mark.fuzz
@pytest.mark.usefixtures("metrics_dir")
def test_fuzz_every_operation(served_schema: Any, admin_token: str) -> None:
    failures, cases = run_schemathesis(served_schema, admin_token, FUZZ_EXAMPLES)
    print(f"schemathesis: {dict(cases)}, {len(failures)} failures")
    assert not failures, "\n".join(failures)
    assert min(cases[operation] for operation in API_OPERATIONS) >= FUZZ_EXAMPLES


def test_the_document_is_written_from_the_vocabulary_and_validates() -> None:
    import bentoml

    from serving.contract import Vocabulary, api_document
    from serving.service import ACCESS, MAX_BODY_BYTES, OPERATIONS, PartnerMatch

    base = bentoml.Service.openapi_spec.fget(cast(Any, PartnerMatch)).asdict()  # BentoML's own document
    vocabulary = Vocabulary(regions=("north", "south"), products=("firewall",))
    document = api_document(base, OPERATIONS, ACCESS.public_paths, vocabulary, MAX_BODY_BYTES)
    schemathesis.openapi.from_dict(document).validate()
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    assert not {"InvalidArgument", "HTTPValidationError", "RouteRequestIODescriptor"} & schemas.keys()
    options = schemas["RouteOptions"]["properties"]["allowed_regions"]["anyOf"][0]
    assert options["items"]["enum"] == ["north", "south"]
    assert options["uniqueItems"] is True
    assert document["paths"]["/route"]["post"]["requestBody"]["required"] is True
    assert "1,048,576 bytes" in document["paths"]["/route"]["post"]["requestBody"]["description"]
    assert document["paths"]["/metrics"]["get"]["security"] == []

    before_loading = api_document(base, OPERATIONS, ACCESS.public_paths, None, MAX_BODY_BYTES)
    assert "enum" not in before_loading["components"]["schemas"]["DealIn"]["properties"]["region"]
    assert base["openapi"] != "3.1.0"  # the input is left as it was
