"""Drift of recent traffic: features recomputed from the decision log, as routing computed them; the
`partnermatch drift` command on the smoke champion (JSON, HTML, MLflow, GET /models)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from features.pairs import DEAL_PRODUCT_COUNT, FEATURE_COLUMNS, LOG_AMOUNT
from models.drift import PREDICTION_COLUMN
from models.registry import Paths
from partnermatch.cli import app
from serving.decision_log import LoggedDecision
from serving.drift import champion_drift, traffic_columns
from serving.routing.state import single_deal, single_deal_features
from serving.schemas import RouteRequest
from tests.serving.conftest import SMOKE, World, deal_body
from training.workflows import demo_ecosystem


def test_traffic_columns_recompute_the_routed_features(synthetic_world: World) -> None:
    router = synthetic_world.router
    request = RouteRequest.model_validate({"deal": deal_body(synthetic_world.deals, 5), "options": {"max_results": 3}})
    response = router.route(request)
    logged = LoggedDecision(
        "d1", datetime.now(UTC), "partnermatch-win", "test", request.model_dump_json(), response.model_dump_json()
    )
    other_model = LoggedDecision("d2", datetime.now(UTC), "partnermatch-team", "1", "{}", "{}")
    columns = traffic_columns(router, [logged, other_model])
    assert set(columns) == {*FEATURE_COLUMNS, PREDICTION_COLUMN}
    np.testing.assert_allclose(columns[PREDICTION_COLUMN], [partner.win_probability for partner in response.partners])
    state = router.state
    rows = np.array([state.context.partner_ids.tolist().index(p.partner_id) for p in response.partners])
    deal = request.deal
    vector = router.encoder.encode([deal.requirement_text])[0]
    products = np.isin(np.array(state.context.products), deal.products)
    region = state.region_positions[deal.region]
    expected = single_deal_features(
        state.context, single_deal(state.as_of_seconds, region, products, deal.amount, vector), rows
    )
    np.testing.assert_allclose(columns[LOG_AMOUNT], expected[:, FEATURE_COLUMNS.index(LOG_AMOUNT)])
    assert traffic_columns(router, [])[PREDICTION_COLUMN].shape == (0,)


def _route_deals(client: Any, deals: list[dict[str, Any]]) -> None:
    for deal in deals:
        assert client.post("/route", json={"deal": deal}).status_code == 200


def test_drift_is_low_for_replayed_deals_and_alerts_on_shifted_ones(client: Any, tmp_path: Path) -> None:
    paths = Paths.from_environment()
    ecosystem, _ = demo_ecosystem(SMOKE.ecosystem, paths)
    rows = range(len(ecosystem.deals) - 60, len(ecosystem.deals))  # the latest deals, as live traffic
    _route_deals(client, [deal_body(ecosystem.deals, row, deal_id=None) for row in rows])
    _, replayed = champion_drift(paths, limit=60)
    shifted_deals = [deal_body(ecosystem.deals, row, deal_id=None) for row in rows]
    for deal in shifted_deals:
        deal["amount"] = deal["amount"] * 200.0  # every deal far larger than any in training
    _route_deals(client, shifted_deals)
    _, shifted = champion_drift(paths, limit=60)
    assert shifted.status == "alert"
    assert shifted.columns[LOG_AMOUNT].psi > 1.0
    assert replayed.columns[LOG_AMOUNT].psi < 0.25 < shifted.columns[LOG_AMOUNT].psi
    # The deal's own features of replayed deals match the training window; routed rows' partner-side
    # features do not (top-k partners as of the history end, not attempted partners as of each deal).
    assert replayed.columns[DEAL_PRODUCT_COUNT].psi < 0.1
    assert shifted.columns[DEAL_PRODUCT_COUNT].psi < 0.1

    html_path, json_path = tmp_path / "drift.html", tmp_path / "drift.json"
    result = CliRunner().invoke(app, ["drift", "--html", str(html_path), "--json", str(json_path), "--limit", "60"])
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text())
    assert report["status"] == "alert" and report["psi"][LOG_AMOUNT] > 1.0
    assert "<svg" in html_path.read_text()
    drift = client.get("/models").json()["models"][0]["drift"]
    assert drift["status"] == "alert" and drift["psi_max"] == round(report["psi_max"], 6)
