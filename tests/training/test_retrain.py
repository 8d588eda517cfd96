"""Retraining with feedback: the promotion rule (pure), and end to end at smoke size: a champion
trained on the first 75% of deals, the rest coming back as feedback through the decision log and
the feedback store, then `partnermatch retrain` (hashing encoder, real LightGBM and MLflow)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import schema
from features.synthetic import EcosystemConfig, generate_ecosystem
from models.bundle import ModelBundle
from models.registry import (
    CHALLENGER,
    CHAMPION,
    FEEDBACK_SEQUENCE_TAG,
    REGISTERED_WIN_MODEL,
    Paths,
    download_bundle,
    version_by_alias,
)
from partnermatch.cli import app
from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackEvent, FeedbackStore
from serving.schemas import DealIn, RouteRequest
from serving.service import prepare_database
from training.config import RetrainConfig, TrainConfig
from training.retrain import Comparison, compare_on_recent, decide_retrain_promotion
from training.stages import run_training
from training.tracking import AliasChange, alias_history, record_alias_change
from training.win_model import PairFrame

SMOKE = TrainConfig(encoder="hashing-32", ecosystem=EcosystemConfig(partners=150, deals=1500, seed=3))


def _frame(labels: np.ndarray, deals: np.ndarray) -> PairFrame:
    return PairFrame(
        features=pd.DataFrame({"x": np.zeros(len(labels))}),
        labels=labels,
        group_ids=deals,
        source_rows=np.arange(len(labels)),
    )


def test_a_better_challenger_clears_the_margin_and_an_equal_one_does_not() -> None:
    rng = np.random.default_rng(0)
    deals = np.repeat(np.arange(200), 4)
    labels = (rng.random(len(deals)) < 0.3).astype(np.int64)
    informed = np.where(labels == 1, 0.7, 0.15)
    flat = np.full(len(deals), 0.3)
    config = RetrainConfig(resamples=300)
    better = compare_on_recent(flat, informed, _frame(labels, deals), config)
    assert better.deals == 200 and better.rows == 800
    assert better.improvement == pytest.approx(better.champion_log_loss - better.challenger_log_loss)
    assert 0 < better.interval[0] < better.improvement < better.interval[1]
    assert decide_retrain_promotion(better, 0.0, "1")[0]
    assert not decide_retrain_promotion(better, better.interval[0] + 1e-6, "1")[0]
    same = compare_on_recent(informed, informed, _frame(labels, deals), config)
    assert same.improvement == 0 and same.interval == (0.0, 0.0)
    promoted, decision = decide_retrain_promotion(same, 0.0, "4")
    assert not promoted and "champion v4" in decision and "kept as challenger" in decision


def test_no_comparison_never_promotes() -> None:
    promoted, decision = decide_retrain_promotion(None, -1.0, "2")
    assert not promoted and "could not score" in decision


def _comparison_is_consistent(comparison: Comparison | dict[str, float]) -> None:
    metrics = comparison.as_metrics() if isinstance(comparison, Comparison) else comparison
    assert metrics["recent_deals"] > 10
    low, high = metrics["log_loss_improvement_ci_low"], metrics["log_loss_improvement_ci_high"]
    assert low <= metrics["log_loss_improvement"] <= high


def _send_feedback(ecosystem: schema.Ecosystem, deals: pd.DataFrame, paths: Paths) -> int:
    """Log one decision per deal and store its outcomes as feedback events; the latest sequence."""
    url = prepare_database(paths)
    decisions, store = DecisionLog(url), FeedbackStore(url)
    outcomes = ecosystem.outcomes.set_index(schema.DEAL_ID)
    for deal in deals.itertuples(index=False):
        request = RouteRequest(
            deal=DealIn(
                requirement_text=deal.requirement_text,
                products=deal.products.split("|"),
                region=deal.region,
                amount=deal.amount,
                segment=deal.segment,
                deal_id=deal.deal_id,
            )
        )
        logged = decisions.append(f"dec-{deal.deal_id}", REGISTERED_WIN_MODEL, "1", request.model_dump_json(), "{}")
        attempts = outcomes.loc[[deal.deal_id]]
        for attempt in attempts.itertuples():
            store.record(
                FeedbackEvent(
                    event_id=f"{deal.deal_id}-{attempt.partner_id}",
                    body_digest="digest",
                    received_at=pd.Timestamp(attempt.closed_at, tz=UTC).to_pydatetime(),
                    kind="outcome",
                    occurred_at=pd.Timestamp(attempt.closed_at, tz=UTC).to_pydatetime(),
                    partner_ids=(attempt.partner_id,),
                    decision_id=logged.decision_id,
                    deal_id=deal.deal_id,
                    won=bool(attempt.won),
                    amount=float(deal.amount),
                    deal_created_at=pd.Timestamp(deal.created_at, tz=UTC).to_pydatetime(),
                    deal_region=deal.region,
                    deal_products=tuple(deal.products.split("|")),
                )
            )
    latest = store.latest_seq()
    store.close()
    decisions.close()
    return latest


@pytest.mark.integration
def test_retrain_folds_feedback_in_and_promotes_only_past_the_margin(
    isolated_paths: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNERMATCH_DECISION_LOG", str(isolated_paths / "decisions.sqlite"))
    paths = Paths.from_environment()
    ecosystem, _ = generate_ecosystem(SMOKE.ecosystem)
    cut = ecosystem.deals[schema.CREATED_AT].quantile(0.75)
    early = ecosystem.deals[schema.CREATED_AT] <= cut
    history_ids = set(ecosystem.deals.loc[early, schema.DEAL_ID])
    history = schema.Ecosystem(
        partners=ecosystem.partners,
        deals=ecosystem.deals[early].reset_index(drop=True),
        outcomes=ecosystem.outcomes[ecosystem.outcomes[schema.DEAL_ID].isin(history_ids)].reset_index(drop=True),
        engagement=ecosystem.engagement,
        communications=ecosystem.communications,
    )
    first = run_training(SMOKE, paths, history, None)
    later = ecosystem.deals[~early & ecosystem.deals[schema.DEAL_ID].isin(set(ecosystem.outcomes[schema.DEAL_ID]))]
    sequence = _send_feedback(ecosystem, later, paths)
    assert sequence == ecosystem.outcomes[schema.DEAL_ID].isin(set(later[schema.DEAL_ID])).sum() > 0

    runner = CliRunner()
    refused = runner.invoke(app, ["retrain", "--margin", "1.0", "--json", str(isolated_paths / "refused.json")])
    assert refused.exit_code == 0, refused.output
    report = json.loads((isolated_paths / "refused.json").read_text())
    assert not report["promoted"] and report["alias"] == CHALLENGER
    assert report["champion_before"] == first.version.version and report["feedback_sequence"] == sequence
    assert "does not clear the margin 1.0000" in report["decision"]
    _comparison_is_consistent(report["comparison"])

    accepted = runner.invoke(app, ["retrain", "--margin", "-1.0", "--json", str(isolated_paths / "accepted.json")])
    assert accepted.exit_code == 0, accepted.output
    report = json.loads((isolated_paths / "accepted.json").read_text())
    assert report["promoted"] and report["alias"] == CHAMPION, report["decision"]
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    assert champion is not None and champion.version == report["version"]
    assert champion.tags[FEEDBACK_SEQUENCE_TAG] == str(sequence)
    bundle = ModelBundle.load(download_bundle(paths, champion, isolated_paths / "dl"))
    deals = bundle.history[schema.DEALS.name]
    assert len(deals) == len(history.deals) + len(later)
    assert set(deals[schema.DEAL_ID]) >= {f"dec-{deal_id}" for deal_id in later[schema.DEAL_ID]}
    assert len(bundle.history[schema.OUTCOMES.name]) == len(history.outcomes) + sequence

    # From the new champion's history: nothing after its sequence is new, nothing is added twice.
    again = runner.invoke(app, ["retrain", "--json", str(isolated_paths / "again.json")])
    assert again.exit_code == 0, again.output
    report = json.loads((isolated_paths / "again.json").read_text())
    assert report["feedback_sequence"] == sequence and report["champion_before"] == champion.version
    newest = ModelBundle.load(
        download_bundle(
            paths, version_by_alias(paths, REGISTERED_WIN_MODEL, report["alias"]) or champion, isolated_paths / "dl2"
        )
    )
    assert len(newest.history[schema.DEALS.name]) == len(deals)

    # Every alias move is in the history: who, when, why, the numbers, and as tags on the run.
    listed = runner.invoke(app, ["aliases", "history", "--model", "win", "--json", str(isolated_paths / "h.json")])
    assert listed.exit_code == 0, listed.output
    changes = json.loads((isolated_paths / "h.json").read_text())["changes"]
    assert [(change["alias"], change["version"]) for change in changes] == [
        (CHAMPION, first.version.version),
        (CHALLENGER, str(int(first.version.version) + 1)),
        (CHAMPION, champion.version),
        (report["alias"], report["version"]),
    ]
    assert changes[2]["previous_version"] == first.version.version and changes[0]["previous_version"] is None
    assert changes[2]["reason"].endswith("promoted to champion") and "@" in changes[2]["changed_by"]
    assert changes[2]["metrics"]["log_loss_improvement"] > changes[2]["metrics"]["log_loss_improvement_ci_low"]
    assert "log_loss" in changes[0]["metrics"]
    assert changes[0]["changed_at"] < changes[1]["changed_at"] < changes[2]["changed_at"]
    assert f"{REGISTERED_WIN_MODEL} @{CHAMPION} -> v{champion.version}" in listed.output
    tags = mlflow.MlflowClient().get_run(champion.run_id).data.tags
    assert tags["alias"] == CHAMPION and tags["decision"] == changes[2]["reason"]
    assert tags["alias_changed_by"] == changes[2]["changed_by"]
    assert runner.invoke(app, ["aliases", "history", "--model", "team"]).output == ""


def test_retrain_without_a_champion_says_what_to_run(isolated_paths: Path) -> None:
    result = CliRunner().invoke(app, ["retrain"])
    assert result.exit_code == 2 and "partnermatch train" in result.output


def test_retrain_refuses_models_without_feedback(isolated_paths: Path) -> None:
    result = CliRunner().invoke(app, ["retrain", "--model", "team"])
    assert result.exit_code == 2 and "only `win`" in result.output


def test_alias_history_reads_back_what_was_recorded_per_model(isolated_paths: Path) -> None:
    paths = Paths.from_environment()
    moments = [datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2)]
    for moment, model_name in zip(moments, ("partnermatch-win", "partnermatch-team"), strict=True):
        change = AliasChange(moment, model_name, CHAMPION, "3", "2", "me@box", "better", {"log_loss": 0.5}, "r1")
        record_alias_change(paths, change)
    everything = alias_history(paths)
    assert [change.model_name for change in everything] == ["partnermatch-win", "partnermatch-team"]
    assert everything[0].changed_at == moments[0] and everything[0].metrics == {"log_loss": 0.5}
    assert [change.changed_at for change in alias_history(paths, "partnermatch-team")] == [moments[1]]
