"""POST /sentiment, POST /partner_health, GET /partners/{id}/kpis and the health page's GET
/partners/at_risk, /partners/cohorts, /partners/{id}/trends over the ASGI app with the smoke
sentiment and health champions: 200 bodies, 422 naming the item and the limit, 404 naming unknown
ids, 503 naming the training command, scopes; batched and single calls agree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import bentoml
import pytest

from features.sentiment_data import SENTIMENT_CLASSES
from models.health import HISTORY_MONTHS
from serving.asgi import INTERNAL_HEADER
from serving.health import AT_RISK_LIMIT
from serving.health_schemas import MAX_SENTIMENT_TEXT_CHARS, MAX_SENTIMENT_TEXTS
from serving.keys import Scope
from serving.ratelimit import RateLimit
from tests.serving.conftest import UNLIMITED, AlreadyStarted


@pytest.fixture(scope="module")
def api(client: Any, admin_token: str) -> Iterator[Any]:
    """A client of the `client` fixture's app on schemathesis' one event loop per process. BentoML's
    batching dispatcher binds to the first loop that calls it (a served process has one loop); the
    contract tests drive the app from that loop, so these tests use it too, in any order."""
    from schemathesis.python.asgi import get_client

    with get_client(AlreadyStarted(client.app)) as session:
        session.headers["Authorization"] = f"Bearer {admin_token}"
        yield session


TEXTS = ["great thanks, excellent work", "the invoice is attached", "terrible, late and broken again"]


def test_sentiment_answers_every_text_with_the_model_version(api: Any) -> None:
    response = api.post("/sentiment", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "partnermatch-sentiment", "version": "1"}
    assert [result["label"] for result in body["results"]] == ["positive", "neutral", "negative"]
    for result in body["results"]:
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
        assert set(result["probabilities"]) == set(SENTIMENT_CLASSES)
        assert 0.0 <= result["frustration"] <= 1.0


def test_batched_and_single_calls_agree(api: Any) -> None:
    batched = api.post("/sentiment", json={"texts": TEXTS}).json()["results"]
    single = [api.post("/sentiment", json={"texts": [text]}).json()["results"][0] for text in TEXTS]
    for one, many in zip(single, batched, strict=True):
        assert one["label"] == many["label"]
        assert one["frustration"] == pytest.approx(many["frustration"], abs=1e-9)
        for name in SENTIMENT_CLASSES:
            assert one["probabilities"][name] == pytest.approx(many["probabilities"][name], abs=1e-9)


@pytest.mark.parametrize(
    ("texts", "field", "limit"),
    [
        (["fine", ""], "texts.1", "1 character"),
        (["fine", "  "], "texts.1", "pattern"),
        (["fine", "fine", "x" * (MAX_SENTIMENT_TEXT_CHARS + 1)], "texts.2", f"{MAX_SENTIMENT_TEXT_CHARS} characters"),
        (["fine"] * (MAX_SENTIMENT_TEXTS + 1), "texts", f"{MAX_SENTIMENT_TEXTS} items"),
        ([], "texts", "1 item"),
    ],
)
def test_sentiment_422_names_the_item_and_the_limit(api: Any, texts: list[str], field: str, limit: str) -> None:
    response = api.post("/sentiment", json={"texts": texts})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert limit in body["reason"]


def test_the_internal_batch_route_is_hidden(api: Any) -> None:
    assert api.post("/sentiment/batch", json={"texts": ["hi"]}).status_code == 404
    forged = api.post("/sentiment/batch", json={"texts": ["hi"]}, headers={INTERNAL_HEADER: "guess"})
    assert forged.status_code == 404
    assert "/sentiment/batch" not in api.get("/docs.json").json()["paths"]


def test_partner_health_scores_bands_and_reasons(api: Any) -> None:
    response = api.post("/partner_health", json={"partner_ids": ["P000001", "P000002"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "partnermatch-health"
    assert [partner["partner_id"] for partner in body["partners"]] == ["P000001", "P000002"]
    for partner in body["partners"]:
        assert 0.0 <= partner["score"] <= 100.0
        assert partner["band"] in ("healthy", "watch", "at_risk")
        assert 0.0 <= partner["disengagement_probability"] <= 1.0
        assert len(partner["reasons"]) == 3
        assert set(partner["components"]) == {"engagement", "sentiment", "pipeline", "win_rate"}


def test_partner_health_404_names_unknown_ids(api: Any) -> None:
    response = api.post("/partner_health", json={"partner_ids": ["P000001", "nobody", "ghost"]})
    assert response.status_code == 404, response.text
    body = response.json()
    assert "'nobody'" in body["reason"] and "'ghost'" in body["reason"]
    assert body["model_version"] == "1"


def test_partner_kpis(api: Any) -> None:
    response = api.get("/partners/P000001/kpis")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["recommendation"] in ("promote", "keep", "review")
    assert {"win_rate_365d", "revenue_365d", "pipeline_amount_365d", "days_to_first_win", "cohort"} <= body[
        "kpis"
    ].keys()
    assert api.get("/partners/nobody/kpis").status_code == 404


def test_partners_at_risk_are_the_most_likely_to_disengage(api: Any) -> None:
    response = api.get("/partners/at_risk")
    assert response.status_code == 200, response.text
    partners = response.json()["partners"]
    assert len(partners) == AT_RISK_LIMIT
    probabilities = [partner["disengagement_probability"] for partner in partners]
    assert probabilities == sorted(probabilities, reverse=True)
    # Nobody left out is more at risk than the last one listed.
    everyone = api.post("/partner_health", json={"partner_ids": [f"P{n:06d}" for n in range(1, 101)]}).json()
    listed = {partner["partner_id"] for partner in partners}
    others = [p["disengagement_probability"] for p in everyone["partners"] if p["partner_id"] not in listed]
    assert max(others) <= probabilities[-1] + 1e-12
    assert all(len(partner["reasons"]) == 3 for partner in partners)


def test_partner_trends_are_monthly_engagement_and_sentiment(api: Any) -> None:
    response = api.get("/partners/P000001/trends")
    assert response.status_code == 200, response.text
    points = response.json()["points"]
    assert len(points) == HISTORY_MONTHS
    dates = [point["as_of"] for point in points]
    assert dates == sorted(dates) and len(set(dates)) == HISTORY_MONTHS
    assert all(point["engagement_30d"] >= 0 for point in points)
    assert all(point["sentiment"] is None or -1.0 <= point["sentiment"] <= 1.0 for point in points)
    assert api.get("/partners/nobody/trends").status_code == 404


def test_partner_cohorts_report_time_to_competency(api: Any) -> None:
    response = api.get("/partners/cohorts")
    assert response.status_code == 200, response.text
    cohorts = response.json()["cohorts"]
    assert len(cohorts) >= 2
    assert [cohort["cohort"] for cohort in cohorts] == sorted(cohort["cohort"] for cohort in cohorts)
    for cohort in cohorts:
        assert 0 <= cohort["first_wins"] <= cohort["partners"]
        assert cohort["median_days"] is None or cohort["median_days"] >= 0


@pytest.fixture()
def without_models(api: Any) -> Iterator[None]:
    """The served instance as if neither model were registered."""
    models = bentoml.get_current_service().models
    saved = models.swap(replace(models.current, sentiment=None, health=None))
    yield
    models.swap(saved)


def test_missing_models_answer_503_naming_the_command(api: Any, without_models: None) -> None:
    sentiment = api.post("/sentiment", json={"texts": ["hi"]})
    assert sentiment.status_code == 503 and "partnermatch train-sentiment" in sentiment.json()["reason"]
    health = api.post("/partner_health", json={"partner_ids": ["P000001"]})
    assert health.status_code == 503 and "partnermatch train-health" in health.json()["reason"]
    assert api.get("/partners/P000001/kpis").status_code == 503
    for path in ("/partners/at_risk", "/partners/cohorts", "/partners/P000001/trends"):
        answer = api.get(path)
        assert answer.status_code == 503 and "partnermatch train-health" in answer.json()["reason"]


def test_scopes(api: Any, key_store: Any) -> None:
    token = key_store.create("sentiment-only", {Scope.SENTIMENT}, RateLimit(**UNLIMITED)).token
    headers = {"Authorization": f"Bearer {token}"}
    assert api.post("/sentiment", json={"texts": ["hi"]}, headers=headers).status_code == 200
    assert api.post("/partner_health", json={"partner_ids": ["P000001"]}, headers=headers).status_code == 403
    assert api.get("/partners/P000001/kpis", headers=headers).status_code == 403
    assert api.get("/partners/at_risk", headers=headers).status_code == 403
