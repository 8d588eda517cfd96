"""The whole win-model pipeline on the Maven CRM fixture, whose outcomes carry no signal:
leak-free ROC-AUC must be 0.5 +- 0.06; adding the leaky close_value must push it near 1."""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_DATA
from training.workflows import evaluate_maven

MAVEN = SHARED_DATA / "maven-crm-sales"


@pytest.mark.integration
def test_maven_is_a_null_control_without_leaks() -> None:
    results = evaluate_maven(MAVEN)
    assert results["model"]["roc_auc"] == pytest.approx(0.5, abs=0.06)
    assert results["logistic_regression"]["roc_auc"] == pytest.approx(0.5, abs=0.06)
    assert results["rows"]["test"] > 800


@pytest.mark.integration
def test_maven_close_value_is_a_leak_the_pipeline_would_catch() -> None:
    results = evaluate_maven(MAVEN, include_leak=True)
    assert results["model"]["roc_auc"] > 0.95
