"""`partnermatch retrain`: the composition training cannot do itself (it never imports serving):
read the champion, its history (or a data directory), the feedback store's new events and the
decisions they close, then hand the tables to `training.retrain.run_retraining`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from features.progress import SILENT, Progress
from models.registry import FEEDBACK_SEQUENCE_TAG, Paths
from serving.decision_log import DecisionLog
from serving.feedback_history import feedback_history
from serving.feedback_store import FeedbackStore
from serving.service import prepare_database
from training.config import RetrainConfig
from training.retrain import FeedbackTables, RetrainReport, champion_history, run_retraining, with_feedback
from training.stages import current_champion
from training.workflows import load_ecosystem_directory


def retrain_with_feedback(
    config: RetrainConfig, paths: Paths, data_dir: Path | None = None, progress: Progress = SILENT
) -> RetrainReport:
    """Retrain the win model on its history plus the feedback since it. History: the champion's
    bundle (feedback after its `feedback_sequence` tag is new), or `data_dir` (every stored event is
    new). Raises ValueError when no champion is registered."""
    champion = current_champion(paths)
    if champion is None:
        raise ValueError("no partnermatch-win champion is registered: run `partnermatch train` first")
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            history = champion_history(paths, champion, Path(tmp))
            after = int(champion.tags.get(FEEDBACK_SEQUENCE_TAG, 0))
        else:
            history, _ = load_ecosystem_directory(data_dir)
            after = 0
        url = prepare_database(paths)
        store, decisions = FeedbackStore(url), DecisionLog(url)
        try:
            deals, outcomes, engagement, sequence = feedback_history(store, decisions, after)
        finally:
            store.close()
            decisions.close()
        progress.step(f"history: {len(history.deals):,} deals; feedback: {len(deals):,} closed deals up to #{sequence}")
        ecosystem = with_feedback(history, FeedbackTables(deals, outcomes, engagement, sequence))
        return run_retraining(config, paths, champion, ecosystem, sequence, progress)
