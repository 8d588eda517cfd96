"""Worker settings for `bentoml serve`, and the load client's credentials."""

from __future__ import annotations

import json

import pytest

from partnermatch.bench.load import API_KEY_ENV, auth_headers
from serving.service import SERVICE_NAME, workers_environment


def test_workers_environment_overrides_the_service_worker_count() -> None:
    overrides = json.loads(workers_environment(3)["BENTOML_CONFIG_OVERRIDES"])
    assert overrides == {"services": {SERVICE_NAME: {"workers": 3}}}
    with pytest.raises(ValueError, match="workers"):
        workers_environment(0)


def test_load_client_sends_a_bearer_key_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert auth_headers() == {}
    monkeypatch.setenv(API_KEY_ENV, "pm_secret")
    assert auth_headers() == {"Authorization": "Bearer pm_secret"}
