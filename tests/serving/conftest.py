"""Serving fixtures: a Router over a small synthetic world (unit tests), and a smoke-sized champion
registered in an isolated MLflow store behind the BentoML ASGI app (HTTP tests), with an API key
store beside its decision log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from features.embed import HashingEncoder
from features.index import PartnerIndex
from features.synthetic import EcosystemConfig, generate_ecosystem
from serving.routing import Router, RoutingSettings
from serving.schemas import ModelInfo
from training.config import HealthConfig, SplitConfig, TeamConfig, TeamModelConfig, TrainConfig, WinModelConfig
from training.ipp import IppConfig
from training.stages import build_dataset, embed_ecosystem, time_split
from training.win_model import WinModelTrainer

WORLD = EcosystemConfig(partners=400, deals=4000, seed=3)
SMOKE = TrainConfig(encoder="hashing-32", ecosystem=EcosystemConfig(partners=300, deals=3000, seed=5))
# The smoke IPP model: the same ecosystem and encoder, few trees and resamples (a few seconds).
SMOKE_IPP = IppConfig(
    ecosystem=SMOKE.ecosystem, encoder=SMOKE.encoder, n_estimators=60, learning_rate=0.1, bootstrap_resamples=20
)

# A weaker model on the same data: registered after the champion it becomes the challenger, the
# shadow every session routes beside the champion (PARTNERMATCH_SHADOW=challenger).
SHADOW_SMOKE = TrainConfig(
    encoder="hashing-32", ecosystem=SMOKE.ecosystem, model=WinModelConfig(n_estimators=3, num_leaves=3)
)

# The smoke team model: its own bundle (win model, history with team deals, index, team model).
SMOKE_TEAM = TeamConfig(
    ecosystem=EcosystemConfig(partners=200, deals=1500, team_deals=300, seed=6),
    encoder="hashing-32",
    win_model=WinModelConfig(n_estimators=40, learning_rate=0.2, min_child_samples=20),
    team_model=TeamModelConfig(),
    candidates_per_requirement=4,
    evaluation_deals=2,
    exact_candidates=2,
    batch_deals=20,
    bootstrap=20,
)


@dataclass(frozen=True)
class World:
    router: Router  # default settings: small catalogues score every eligible partner
    retrieval_router: Router  # retrieval forced, with budgets scaled to the small catalogue
    partners: Any  # pandas DataFrame of the partners table
    deals: Any  # pandas DataFrame of the deals table


def deal_body(deals: Any, row: int, **changes: Any) -> dict[str, Any]:
    """The deal of `deals` row `row` as a RouteRequest `deal` object (no registration)."""
    deal = deals.iloc[row]
    body = {
        "requirement_text": str(deal["requirement_text"]),
        "products": str(deal["products"]).split("|"),
        "region": str(deal["region"]),
        "amount": float(deal["amount"]),
        "segment": str(deal["segment"]),
        "deal_id": str(deal["deal_id"]),
    }
    return body | changes


@pytest.fixture(scope="session")
def synthetic_world() -> World:
    """400 partners, 4000 deals, a WinModel fitted on their point-in-time pair features, hashing-32 text."""
    ecosystem, _ = generate_ecosystem(WORLD)
    encoder = HashingEncoder(32)
    dataset = build_dataset(ecosystem, embed_ecosystem(ecosystem, encoder))
    splits = time_split(dataset, SplitConfig())
    model = (
        WinModelTrainer(WinModelConfig(n_estimators=60, learning_rate=0.2, min_child_samples=20))
        .fit(splits.train, splits.calibration)
        .model_
    )
    context = dataset.context
    index = PartnerIndex.build(context.partner_ids.tolist(), context.partner_vectors)
    pieces: dict[str, Any] = {
        "model": model,
        "context": context,
        "index": index,
        "encoder": encoder,
        "partners": ecosystem.partners,
        "history_deals": ecosystem.deals,
        "model_info": ModelInfo(name="partnermatch-win", version="test", encoder=encoder.name),
    }
    return World(
        router=Router(**pieces),
        retrieval_router=Router(
            **pieces, settings=RoutingSettings(text_neighbours=20, shortlist_size=20, exhaustive_limit=0)
        ),
        partners=ecosystem.partners,
        deals=ecosystem.deals,
    )


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A smoke-sized champion, a weaker challenger (in shadow mode), an IPP champion and a team model
    trained and registered in an MLflow store of its own; the PARTNERMATCH_* variables point at it
    for the whole session."""
    from models.registry import Paths
    from serving.reload import RELOAD_SECONDS_ENV
    from training.ipp import train_ipp
    from training.stages import run_training
    from training.team import run_team_training
    from training.workflows import demo_ecosystem

    root = tmp_path_factory.mktemp("serving-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARTNERMATCH_MLRUNS", str(root / "mlruns"))
        patch.setenv("PARTNERMATCH_CACHE", str(root / "cache"))
        patch.setenv("PARTNERMATCH_DECISION_LOG", str(root / "decisions.sqlite"))
        # No polling: other tests point MLflow at stores of their own while the service lives
        # (test_reload drives reloads itself).
        patch.setenv(RELOAD_SECONDS_ENV, "0")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        paths = Paths.from_environment()
        ecosystem, truth = demo_ecosystem(SMOKE.ecosystem, paths)
        run_training(SMOKE, paths, ecosystem, truth)
        train_ipp(SMOKE_IPP, paths, ecosystem, truth)
        run_training(SHADOW_SMOKE, paths, ecosystem, truth)
        patch.setenv("PARTNERMATCH_SHADOW", "challenger")
        run_team_training(SMOKE_TEAM, paths, *generate_ecosystem(SMOKE_TEAM.ecosystem))
        yield root


@pytest.fixture(scope="session")
def key_store(smoke_store: Path) -> Iterator[Any]:
    """The service's API key store (a serving.keys.KeyStore) in the smoke store."""
    from serving.service import open_key_store

    store = open_key_store()
    yield store
    store.close()


# Tests send many requests at once: a limit they never reach.
UNLIMITED = {"per_second": 1e6, "burst": 1_000_000}


@pytest.fixture(scope="session")
def admin_token(key_store: Any) -> str:
    """A token with every scope and no practical rate limit."""
    from serving.keys import Scope
    from serving.ratelimit import RateLimit

    return str(key_store.create("tests", set(Scope), RateLimit(**UNLIMITED)).token)


@pytest.fixture(scope="session")
def client(smoke_health_store: Path, admin_token: str) -> Iterator[Any]:
    """Starlette TestClient over the service's ASGI app (lifespan started: the model is loaded),
    sending the admin key on every request unless a test overrides the header."""
    from starlette.testclient import TestClient

    from serving.service import PartnerMatch

    # The bentoml decorators made the class a Service (mypy still sees the class).
    app = cast(Any, PartnerMatch).to_asgi()
    with TestClient(app, headers={"Authorization": f"Bearer {admin_token}"}) as test_client:
        yield test_client


class AlreadyStarted:
    """An ASGI app whose lifespan someone else runs: lifespan events are acknowledged here and
    requests go to the app. Schemathesis starts and stops the lifespan of the app it tests around
    each test; this lets it test the `client` fixture's app, the only one a process can have (BentoML
    registers each app's Prometheus metrics in one registry)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return


@pytest.fixture(scope="session")
def served_schema(client: Any) -> Any:
    """The contract the service serves, as a Schemathesis schema that sends its requests to the app."""
    import schemathesis

    return schemathesis.openapi.from_asgi("/docs.json", AlreadyStarted(client.app))


# The service's database on PostgreSQL: a real server, which `make test` starts (.ci/with-postgres.sh).
POSTGRES_URL_ENV = "PARTNERMATCH_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The URL of the throwaway PostgreSQL server's maintenance database. In CI (`CI` set) a missing
    server fails the test; elsewhere the test is skipped when `PARTNERMATCH_TEST_POSTGRES_URL` is unset."""
    import os

    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    reason = f"{POSTGRES_URL_ENV} is unset: run the tests through .ci/with-postgres.sh (as `make test` does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped after it)."""
    import uuid

    import sqlalchemy as sa

    from serving.stores import open_engine

    name = f"test_{uuid.uuid4().hex}"
    server = open_engine(postgres_server_url).execution_options(isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    with server.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    server.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the service: a SQLite file, and a PostgreSQL database."""
    from serving.stores import sqlite_url, upgrade_database

    url = (
        sqlite_url(tmp_path / "database.sqlite")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade_database(url)
    return str(url)


SMOKE_HEALTH = HealthConfig(ecosystem=SMOKE.ecosystem, calibration="platt", bootstrap_resamples=5, n_estimators=60)


@pytest.fixture(scope="session")
def smoke_health_store(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke store plus a smoke sentiment champion (tiny texts, hashing encoder) and a smoke
    health champion on the smoke ecosystem (its messages scored by that sentiment model)."""
    from models.registry import Paths
    from tests.training.test_sentiment import TINY, write_goemotions, write_phrasebank
    from training.health import train_health
    from training.sentiment import train_sentiment

    texts = tmp_path_factory.mktemp("smoke-sentiment")
    paths = Paths.from_environment()
    phrasebank = write_phrasebank(texts / "Sentences_50Agree.txt", 40, seed=0)
    train_sentiment(phrasebank, write_goemotions(texts / "goemotions", 40), paths, TINY)
    train_health(SMOKE_HEALTH, paths)
    return smoke_store
