"""Worker settings for `bentoml serve`."""

from __future__ import annotations

import json

import pytest

from serving.service import SERVICE_NAME, workers_environment


def test_workers_environment_overrides_the_service_worker_count() -> None:
    overrides = json.loads(workers_environment(3)["BENTOML_CONFIG_OVERRIDES"])
    assert overrides == {"services": {SERVICE_NAME: {"workers": 3}}}
    with pytest.raises(ValueError, match="workers"):
        workers_environment(0)
