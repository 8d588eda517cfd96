"""The error middleware on its own: foreign error answers and escaping exceptions become the one
JSON shape; successful answers pass untouched."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.asgi import JsonErrors


async def ok(_: object) -> PlainTextResponse:
    return PlainTextResponse("fine")


async def broken(_: object) -> PlainTextResponse:
    raise RuntimeError("a bug")


async def bentoml_validation(_: object) -> JSONResponse:
    detail = [{"loc": ["deal", "amount"], "msg": "must be > 0"}, {"loc": [], "msg": "bad"}]
    return JSONResponse({"error": "2 validation errors", "detail": detail}, status_code=400)


@pytest.fixture
def client() -> TestClient:
    routes = [Route("/ok", ok), Route("/broken", broken), Route("/validation", bentoml_validation, methods=["POST"])]
    return TestClient(JsonErrors(Starlette(routes=routes)), raise_server_exceptions=False)


def test_successful_answers_pass_untouched(client: TestClient) -> None:
    response = client.get("/ok")
    assert (response.status_code, response.text, response.headers["content-type"]) == (
        200,
        "fine",
        "text/plain; charset=utf-8",
    )


def test_an_escaping_exception_is_a_json_500(client: TestClient) -> None:
    response = client.get("/broken")
    assert response.status_code == 500
    assert response.json()["field"] == "server"


def test_text_404_and_405_become_json_naming_path_and_method(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.json()["field"]) == (404, "path")
    assert "/nowhere" in missing.json()["reason"]
    wrong = client.delete("/ok")
    assert (wrong.status_code, wrong.json()["field"]) == (405, "method")
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_bentoml_validation_400_becomes_422_listing_every_field(client: TestClient) -> None:
    response = client.post("/validation")
    assert response.status_code == 422
    assert [problem["field"] for problem in response.json()["problems"]] == ["deal.amount", "body"]
    assert int(response.headers["content-length"]) == len(response.content)
