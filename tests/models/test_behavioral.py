"""Behavioural tests of a trained win model (after Made-With-ML's tests/model/test_behavioral.py):
invariance (a partner's name never moves its rank), directional (more certification or a better win
record never lowers the win probability, more load never raises it) and minimum functionality (a
partner far over capacity scores below an otherwise equal partner with room).

The directional tests hold because of the monotone constraints (`features.pairs.MONOTONE_DIRECTIONS`):
the same model trained without them breaks them on some rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.embed import HashingEncoder
from features.index import PartnerIndex
from features.pairs import (
    CERT_COVERAGE,
    CERT_LEVEL,
    LOAD_RATIO,
    WIN_RATE_OVERALL,
    WIN_RATE_PRODUCTS,
    WIN_RATE_REGION,
    build_feature_context,
)
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.win import WinModel
from serving.routing import Router
from serving.schemas import ModelInfo, RouteRequest
from training.config import SplitConfig, WinModelConfig
from training.stages import build_dataset, embed_ecosystem, time_split
from training.win_model import WinModelTrainer

WORLD = EcosystemConfig(partners=300, deals=3000, seed=11)
SMOKE_MODEL = WinModelConfig(n_estimators=60, min_child_samples=20)
ROUTED_DEALS = 6
TOP = 10


@dataclass(frozen=True)
class Trained:
    model: WinModel
    features: pd.DataFrame  # point-in-time pair features of every test-window row
    ecosystem: schema.Ecosystem
    encoder: HashingEncoder


@pytest.fixture(scope="module")
def trained() -> Trained:
    """A smoke-sized win model on a synthetic ecosystem (a few seconds)."""
    ecosystem, _ = generate_ecosystem(WORLD)
    encoder = HashingEncoder(32)
    splits = time_split(build_dataset(ecosystem, embed_ecosystem(ecosystem, encoder)), SplitConfig())
    model = WinModelTrainer(SMOKE_MODEL).fit(splits.train, splits.calibration).model_
    return Trained(model=model, features=splits.test.features, ecosystem=ecosystem, encoder=encoder)


def router_over(trained: Trained, partners: pd.DataFrame) -> Router:
    """A Router whose partner table, feature context and index all come from `partners`."""
    ecosystem = trained.ecosystem
    partner_vectors = trained.encoder.encode(partners[schema.PROFILE_TEXT].astype(str).tolist())
    context = build_feature_context(
        partners, ecosystem.deals, ecosystem.outcomes, ecosystem.engagement, partner_vectors
    )
    return Router(
        model=trained.model,
        context=context,
        index=PartnerIndex.build(context.partner_ids.tolist(), context.partner_vectors),
        encoder=trained.encoder,
        partners=partners,
        history_deals=ecosystem.deals,
        model_info=ModelInfo(name="partnermatch-win", version="test", encoder=trained.encoder.name),
    )


def route_request(deals: pd.DataFrame, row: int) -> RouteRequest:
    deal = deals.iloc[row]
    body: dict[str, Any] = {
        "requirement_text": str(deal[schema.REQUIREMENT_TEXT]),
        "products": str(deal[schema.DEAL_PRODUCTS]).split("|"),
        "region": str(deal[schema.DEAL_REGION]),
        "amount": float(deal[schema.AMOUNT]),
        "segment": str(deal[schema.SEGMENT]),
    }
    return RouteRequest.model_validate({"deal": body, "options": {"max_results": TOP}})


def probabilities_after(trained: Trained, **changes: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n,) win probabilities of the test rows before and after setting columns (value or function)."""
    changed = trained.features.copy()
    for column, change in changes.items():
        changed[column] = change(changed[column]) if callable(change) else change
        changed[column] = changed[column].astype(np.float32)
    return trained.model.predict_win_probability(trained.features), trained.model.predict_win_probability(changed)


def test_renaming_partners_changes_no_rank(trained: Trained) -> None:
    partners = trained.ecosystem.partners
    renamed = partners.assign(**{schema.PARTNER_NAME: [f"Renamed {row}" for row in range(len(partners))][::-1]})
    new_names = renamed.set_index(schema.PARTNER_ID)[schema.PARTNER_NAME]
    original, after_renaming = router_over(trained, partners), router_over(trained, renamed)
    for row in range(ROUTED_DEALS):
        request = route_request(trained.ecosystem.deals, row)
        before, after = original.route(request).partners, after_renaming.route(request).partners
        assert len(before) == TOP
        assert [(p.partner_id, p.rank, p.win_probability) for p in after] == [
            (p.partner_id, p.rank, p.win_probability) for p in before
        ]
        assert [p.name for p in after] == [new_names[p.partner_id] for p in before]


@pytest.mark.parametrize(
    "changes",
    [
        {CERT_COVERAGE: 1.0},
        {CERT_LEVEL: 1.0},
        {CERT_COVERAGE: lambda values: np.minimum(values + 0.34, 1.0)},
        {CERT_LEVEL: lambda values: np.minimum(values + 0.34, 1.0)},
        {WIN_RATE_PRODUCTS: lambda values: np.minimum(values + 0.15, 1.0)},
        {WIN_RATE_REGION: lambda values: np.minimum(values + 0.15, 1.0)},
        {WIN_RATE_OVERALL: lambda values: np.minimum(values + 0.15, 1.0)},
        {WIN_RATE_PRODUCTS: 1.0, WIN_RATE_REGION: 1.0, WIN_RATE_OVERALL: 1.0},
    ],
    ids=["full-coverage", "top-level", "more-coverage", "higher-level", "products", "region", "overall", "perfect"],
)
def test_more_certification_or_a_better_record_never_lowers_the_probability(
    trained: Trained, changes: dict[str, Any]
) -> None:
    before, after = probabilities_after(trained, **changes)
    assert len(before) > 1000
    assert np.all(after >= before - 1e-12)


def test_more_load_never_raises_the_probability(trained: Trained) -> None:
    before, after = probabilities_after(trained, **{LOAD_RATIO: lambda values: values + 0.5})
    assert np.all(after <= before + 1e-12)


def test_a_partner_far_over_capacity_scores_below_an_equal_partner_with_room(trained: Trained) -> None:
    _, with_room = probabilities_after(trained, **{LOAD_RATIO: 0.2})
    _, over_capacity = probabilities_after(trained, **{LOAD_RATIO: 4.0})
    assert np.all(over_capacity <= with_room + 1e-12)
    # The model learned the overload penalty, not only its sign: a clear drop on average.
    assert float(np.mean(with_room - over_capacity)) > 0.02
