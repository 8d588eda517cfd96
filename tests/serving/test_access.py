"""The guards of the API over its ASGI app: API keys (401, 403), rate limits (429), body limits (413,
415), safe retries (Idempotency-Key, deal_id), one JSON error shape everywhere, and the contract the
service serves (vocabularies, statuses, security)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from models.registry import Paths
from serving.decision_log import DecisionLog
from serving.keys import Scope
from serving.ratelimit import RateLimit
from serving.service import KEY_RECHECK_SECONDS, MAX_BODY_BYTES, database_url
from tests.serving.conftest import UNLIMITED
from tests.serving.test_service import DEAL

BODY = {"deal": DEAL, "options": {"max_results": 2}}
ERROR_KEYS = {"error", "field", "reason", "problems"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The body of an error answer, checked to be JSON in the one shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= ERROR_KEYS
    assert body["problems"][0] == {"field": body["field"], "reason": body["reason"]}
    return body


def logged_decisions() -> int:
    log = DecisionLog(database_url(Paths.from_environment()))
    try:
        return len(log)
    finally:
        log.close()


@pytest.fixture
def route_token(key_store: Any) -> str:
    return str(key_store.create("crm", {Scope.ROUTE}, RateLimit(**UNLIMITED)).token)


def test_no_wrong_or_revoked_key_is_401(client: Any, key_store: Any, route_token: str) -> None:
    missing = error_of(client.post("/route", json=BODY, headers={"Authorization": ""}), 401)
    assert missing["field"] == "headers.authorization"
    assert "Bearer" in missing["reason"]
    wrong = client.post("/route", json=BODY, headers=bearer(route_token[:-4] + "AAAA"))
    assert "revoked" in error_of(wrong, 401)["reason"]
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/route", json=BODY, headers=bearer(route_token)).status_code == 200
    key_store.revoke(route_token.split("_")[1])
    time.sleep(KEY_RECHECK_SECONDS)  # the service reads a key again after this long
    error_of(client.post("/route", json=BODY, headers=bearer(route_token)), 401)
    error_of(client.get("/decisions/anything", headers={"Authorization": ""}), 401)


def test_x_api_key_header_is_accepted(client: Any, route_token: str) -> None:
    response = client.post("/route", json=BODY, headers={"Authorization": "", "X-API-Key": route_token})
    assert response.status_code == 200


def test_a_key_without_the_scope_is_403(client: Any, key_store: Any, route_token: str) -> None:
    reader = key_store.create("analyst", {Scope.READ_DECISIONS}).token
    denied = error_of(client.post("/route", json=BODY, headers=bearer(reader)), 403)
    assert "route" in denied["reason"]
    decision_id = client.post("/route", json=BODY, headers=bearer(route_token)).json()["decision_id"]
    assert (
        "read_decisions"
        in error_of(client.get(f"/decisions/{decision_id}", headers=bearer(route_token)), 403)["reason"]
    )
    assert client.get(f"/decisions/{decision_id}", headers=bearer(reader)).status_code == 200


def test_health_probes_and_docs_need_no_key(client: Any) -> None:
    anonymous = {"Authorization": ""}
    for path in ("/healthz", "/livez", "/readyz", "/docs", "/docs.json", "/", "/static_content/swagger-ui.css"):
        assert client.get(path, headers=anonymous).status_code == 200, path


def test_past_the_rate_limit_is_429_with_retry_after(client: Any, key_store: Any) -> None:
    token = key_store.create("burst-2", {Scope.ROUTE}, RateLimit(per_second=0.01, burst=2)).token
    assert [client.post("/route", json=BODY, headers=bearer(token)).status_code for _ in range(2)] == [200, 200]
    throttled = client.post("/route", json=BODY, headers=bearer(token))
    assert "rate limit" in error_of(throttled, 429)["reason"]
    assert 1 <= int(throttled.headers["retry-after"]) <= 100


def test_an_oversized_body_is_413_declared_or_streamed(client: Any) -> None:
    big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    declared = client.post("/route", content=big, headers={"content-type": "application/json"})
    assert error_of(declared, 413)["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)

    error_of(client.post("/route", content=chunks(), headers={"content-type": "application/json"}), 413)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=deal\r\n\r\n{}\r\n--x--"),
        ("text/plain", b"{}"),
        ("application/x-www-form-urlencoded", b"deal=1"),
        (None, b'{"deal": {}}'),
    ],
)
def test_a_body_that_is_not_json_is_415(client: Any, content_type: str | None, content: bytes) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    assert error_of(client.post("/route", content=content, headers=headers), 415)["field"] == "headers.content-type"


def test_json_with_a_charset_is_fine(client: Any) -> None:
    headers = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/route", json=BODY, headers=headers).status_code == 200


def test_a_retry_with_the_same_key_and_body_replays_the_decision(client: Any, admin_token: str) -> None:
    retry = {"Idempotency-Key": "crm-retry-1"}
    before = logged_decisions()
    first = client.post("/route", json=BODY, headers=retry)
    again = client.post("/route", json=BODY, headers=retry)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content  # byte for byte: same decision_id, same partners
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert logged_decisions() == before + 1

    other_body = {"deal": DEAL, "options": {"max_results": 3}}
    conflict = error_of(client.post("/route", json=other_body, headers=retry), 409)
    assert conflict["field"] == "headers.idempotency-key"
    assert first.json()["decision_id"] in conflict["reason"]
    assert logged_decisions() == before + 1


def test_idempotency_keys_belong_to_one_api_key(client: Any, route_token: str) -> None:
    retry = {"Idempotency-Key": "crm-retry-shared"}
    mine = client.post("/route", json=BODY, headers=retry).json()
    theirs = client.post("/route", json=BODY, headers=retry | bearer(route_token)).json()
    assert mine["decision_id"] != theirs["decision_id"]


def test_without_the_header_the_deal_id_and_body_identify_a_retry(client: Any) -> None:
    body = {"deal": DEAL | {"deal_id": "CRM-RETRY-7"}, "options": {"max_results": 2}}
    before = logged_decisions()
    first = client.post("/route", json=body)
    # Same body spelt differently (key order, a default made explicit): still the same request.
    respelt = {"options": {"respect_capacity": True, "max_results": 2}, "deal": body["deal"]}
    again = client.post("/route", json=respelt)
    assert again.json()["decision_id"] == first.json()["decision_id"]
    assert again.headers["idempotent-replayed"] == "true"
    changed = client.post("/route", json={"deal": body["deal"] | {"amount": 99000.0}, "options": {"max_results": 2}})
    assert changed.status_code == 200
    assert changed.json()["decision_id"] != first.json()["decision_id"]
    assert logged_decisions() == before + 2
    plain = [client.post("/route", json=BODY).json()["decision_id"] for _ in range(2)]
    assert plain[0] != plain[1]  # no deal_id, no header: every request is a new decision


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_malformed_idempotency_key_is_400(client: Any, key: str) -> None:
    body = error_of(client.post("/route", json=BODY, headers={"Idempotency-Key": key}), 400)
    assert body["field"] == "headers.idempotency-key"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no-such-endpoint", 404),
        ("POST", "/decisions/abc", 405),
        ("GET", "/route", 405),
        ("DELETE", "/route", 405),
        ("GET", "/decisions/", 404),
        ("GET", "/decisions", 404),
        ("GET", "/decisions/a/b", 404),
        ("GET", "/decisions/%00", 404),
    ],
)
def test_every_error_is_json_in_the_one_shape(client: Any, method: str, path: str, status: int) -> None:
    response = client.request(method, path, follow_redirects=False)
    error_of(response, status)
    if status == 405:
        assert response.headers["allow"]


def test_the_served_contract_lists_vocabularies_statuses_and_security(client: Any) -> None:
    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    regions = schemas["DealIn"]["properties"]["region"]["enum"]
    products = schemas["DealIn"]["properties"]["products"]["items"]["enum"]
    assert DEAL["region"] in regions and set(DEAL["products"]) <= set(products)
    assert schemas["CertificationRequirement"]["properties"]["product"]["enum"] == products
    assert schemas["CertificationRequirement"]["properties"]["min_level"]["enum"] == [1, 2, 3]
    route = spec["paths"]["/route"]["post"]
    assert set(route["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
    }
    assert all(
        response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
        for status, response in route["responses"].items()
        if status != "200"
    )
    assert "Retry-After" in route["responses"]["429"]["headers"]
    assert any(parameter["name"] == "Idempotency-Key" for parameter in route["parameters"])
    assert route["security"] == [{"bearerKey": []}, {"headerKey": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert set(spec["paths"]["/decisions/{decision_id}"]["get"]["responses"]) >= {"200", "401", "403", "404", "429"}
    assert spec["components"]["securitySchemes"]["bearerKey"]["scheme"] == "bearer"
