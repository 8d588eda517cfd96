"""Shared fixtures: a hand-built tiny world (20 partners, 8 open deals + history) for unit tests,
a deterministic fake encoder, and isolated MLflow / cache directories."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from features import schema
from features.embed import ONNX_EXPORT_DIR, ONNX_STATIC_EXPORT_DIR, export_onnx_int8, export_onnx_int8_static

# The public data sets sit beside the repository (CI: ../shared/data); PARTNERMATCH_SHARED_DATA points
# elsewhere (e.g. from a git worktree). Tests that need them skip only when the directory is absent.
SHARED_DATA = Path(os.environ.get("PARTNERMATCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")


def tiny_world(seed: int = 7) -> schema.Ecosystem:
    """20 partners in two regions, 48 historical deals (2 attempts each) and 8 open deals."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    products = list(schema.PRODUCTS[:4])
    regions = list(schema.REGIONS[:2])
    partners = pd.DataFrame(
        {
            schema.PARTNER_ID: [f"P{i:03d}" for i in range(20)],
            schema.PARTNER_NAME: [f"Partner {i}" for i in range(20)],
            schema.PROFILE_TEXT: [f"{products[i % 4]} specialist in {regions[i % 2]}" for i in range(20)],
            schema.HOME_REGION: [regions[i % 2] for i in range(20)],
            schema.PARTNER_REGIONS: [regions[i % 2] if i % 5 else "|".join(regions) for i in range(20)],
            schema.CERTIFICATIONS: [f"{products[i % 4]}:{1 + i % 3}" for i in range(20)],
            schema.TIER: [schema.TIERS[i % 4] for i in range(20)],
            schema.CAPACITY: [3 + i % 4 for i in range(20)],
            schema.JOINED_AT: [start - pd.Timedelta(days=int(d)) for d in rng.integers(-60, 400, 20)],
        }
    )
    n_deals = 56
    created = start + pd.to_timedelta(np.sort(rng.integers(0, 300, n_deals)), unit="D")
    deals = pd.DataFrame(
        {
            schema.DEAL_ID: [f"D{i:04d}" for i in range(n_deals)],
            schema.CREATED_AT: created,
            schema.SEGMENT: [schema.SEGMENTS[i % 4] for i in range(n_deals)],
            schema.DEAL_REGION: [regions[i % 2] for i in range(n_deals)],
            schema.DEAL_PRODUCTS: [
                products[i % 4] if i % 3 else f"{products[i % 4]}|{products[(i + 1) % 4]}" for i in range(n_deals)
            ],
            schema.REQUIREMENT_TEXT: [f"need {products[i % 4]} in {regions[i % 2]}" for i in range(n_deals)],
            schema.AMOUNT: rng.lognormal(10, 1, n_deals),
            schema.REGISTERED_PARTNER_ID: [""] * n_deals,
        }
    )
    history = deals.iloc[:48]
    attempt_deals = np.repeat(history[schema.DEAL_ID].to_numpy(), 2)
    attempt_partners = [f"P{(2 * i + k * 3) % 20:03d}" for i in range(48) for k in range(2)]
    closed = np.repeat(history[schema.CREATED_AT].to_numpy(), 2) + pd.to_timedelta(rng.integers(5, 60, 96), unit="D")
    outcomes = pd.DataFrame(
        {
            schema.DEAL_ID: attempt_deals,
            schema.PARTNER_ID: attempt_partners,
            schema.WON: rng.random(96) < 0.4,
            schema.CLOSED_AT: closed,
            schema.TEAM_ID: [""] * 96,
        }
    )
    engagement = pd.DataFrame(
        {
            schema.PARTNER_ID: [f"P{i % 20:03d}" for i in range(200)],
            schema.OCCURRED_AT: start + pd.to_timedelta(rng.integers(0, 300, 200), unit="D"),
            schema.EVENT_KIND: [schema.ENGAGEMENT_KINDS[i % 5] for i in range(200)],
        }
    )
    communications = pd.DataFrame(
        {
            schema.MESSAGE_ID: ["M0001"],
            schema.PARTNER_ID: ["P001"],
            schema.SENT_AT: [start],
            schema.CHANNEL: ["email"],
            schema.MESSAGE_TEXT: ["Great quarter, pipeline is growing."],
        }
    )
    return schema.Ecosystem(partners, deals, outcomes, engagement, communications)


class RecordingProgress:
    """A `Progress` that keeps every call: `steps` messages, `counts` (done, total) pairs."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.counts: list[tuple[int, int]] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def count(self, done: int, total: int) -> None:
        self.counts.append((done, total))


@pytest.fixture
def world() -> schema.Ecosystem:
    return tiny_world()


@dataclass(frozen=True)
class OnnxExport:
    cache_dir: Path  # a cache directory holding the export in ONNX_EXPORT_DIR
    escaped: list[str]  # every warning, WARNING-or-worse log record and stderr output of the export

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / ONNX_EXPORT_DIR


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"log {record.name}: {record.getMessage()}")


def recorded_export(export: Callable[[Path], Path], model_dir: Path) -> list[str]:
    """Run `export(model_dir)`; every warning, WARNING-or-worse log record and stderr output it lets through."""
    handler, stderr = RecordingHandler(), io.StringIO()
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
            warnings.simplefilter("always")
            export(model_dir)
    finally:
        logging.getLogger().removeHandler(handler)
    shown = [f"{warning.category.__name__}: {warning.message}" for warning in caught]
    return shown + handler.messages + ([f"stderr: {stderr.getvalue()}"] if stderr.getvalue() else [])


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> OnnxExport:
    """One ONNX int8 MiniLM export for the session, with whatever it lets through to a user."""
    cache_dir = tmp_path_factory.mktemp("onnx-cache")
    return OnnxExport(cache_dir, recorded_export(export_onnx_int8, cache_dir / ONNX_EXPORT_DIR))


@pytest.fixture(scope="session")
def onnx_static_export(onnx_export: OnnxExport) -> list[str]:
    """The static int8 export, beside the dynamic one in `onnx_export.cache_dir` (ONNX_STATIC_EXPORT_DIR),
    made once per session; returns what it lets through to a user."""
    return recorded_export(export_onnx_int8_static, onnx_export.cache_dir / ONNX_STATIC_EXPORT_DIR)


@pytest.fixture(scope="session")
def onnx_cache_dir(onnx_export: OnnxExport) -> Path:
    """A cache directory holding the ONNX int8 MiniLM export (in ONNX_EXPORT_DIR), made once per session."""
    return onnx_export.cache_dir


@pytest.fixture
def isolated_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MLflow store and caches under tmp_path for this test."""
    monkeypatch.setenv("PARTNERMATCH_MLRUNS", str(tmp_path / "mlruns"))
    monkeypatch.setenv("PARTNERMATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
