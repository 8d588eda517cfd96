"""Typed, frozen configuration. Defaults live here; `configs/*.toml` override them; CLI options
override the file. Where the store and caches live is `models.registry.Paths` (from the environment).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from features.synthetic import EcosystemConfig
from models.assignment import EMERGING_TENURE_DAYS
from models.calibration import CalibrationChoice
from training.evaluate import BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES

EXPERIMENT = "partnermatch"


@dataclass(frozen=True)
class WinModelConfig:
    """LightGBM win-probability model: `binary` with a cross-validated calibration by default (see README)."""

    objective: Literal["binary", "lambdarank"] = "binary"
    # Small and few trees, sized on measurements, because TreeSHAP for the returned partners is paid on
    # every routing request (~6 us per tree per 10 rows). 20k partners / 40k deals: 7 leaves at rate 0.2
    # (87 trees) match 31 leaves at 0.05 (126 trees) on test NDCG@10 (0.905 vs 0.905) and log-loss
    # (0.502 vs 0.501). 100k / 200k: early stopping ran to 203 trees, but the first 100 score the same
    # on the test window (log-loss 0.4984 vs 0.4983, ROC-AUC 0.7725 vs 0.7726) at half the cost.
    n_estimators: int = 100
    learning_rate: float = 0.2
    num_leaves: int = 7
    min_child_samples: int = 100
    colsample_bytree: float = 0.9
    subsample: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    # "auto": the method (platt, isotonic, none) with the lowest out-of-fold log-loss over deal-grouped
    # folds of the calibration window; or one method, fixed.
    calibration: CalibrationChoice = "auto"
    # LightGBM monotone constraints from features.pairs.MONOTONE_DIRECTIONS.
    monotone_constraints: bool = True
    threads: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SplitConfig:
    """Time-ordered split of deals by `created_at`: train | calibration | validation | test.

    Shares are of all deals; calibration (early stopping + probability calibration) is the last
    part of the training period; validation decides promotion; test is reported and never fitted.
    """

    calibration_share: float = 0.1
    validation_share: float = 0.15
    test_share: float = 0.15


@dataclass(frozen=True)
class EvaluationConfig:
    """Oracle slates (synthetic ecosystems only): candidate partners per test deal."""

    slate_deals: int = 2000
    slate_size: int = 50
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    ecosystem: EcosystemConfig = field(default_factory=EcosystemConfig)
    model: WinModelConfig = field(default_factory=WinModelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    encoder: str = "minilm-onnx-int8"
    # Lower is better: the proper scoring rule covers both ranking and calibration.
    promotion_metric: str = "log_loss"


@dataclass(frozen=True)
class TeamModelConfig:
    """The team model (`models.team.TeamModel`): a logistic model with sign-constrained coefficients.

    A LightGBM team model (300 trees of 7 leaves) lost to the best single partner per requirement
    (true win probability 0.65 vs 0.71 on 200 held-out deals): legacy teams are weak (95% have a log
    product of fits below -1.8, best-single teams sit near -1.1), trees are flat beyond that, and
    the optimiser ranked strong teams by noise. 50 residual trees on top of the linear model, tried
    on 60 deals, lost again (-0.024 vs best-single where the linear model alone gave +0.018).
    """

    l2: float = 0.01  # ridge penalty on the standardised coefficients, per training row
    calibration: Literal["platt", "none"] = "platt"  # strictly monotone maps only: the optimiser needs no ties


@dataclass(frozen=True)
class RetrainConfig:
    """Retraining with feedback: the training recipe (the champion's encoder and model parameters
    replace `train`'s) and the promotion rule: promote when the lower end of the bootstrap interval
    of the log-loss improvement (champion - challenger, nats, over resampled recent deals) is above
    `margin`."""

    train: TrainConfig = field(default_factory=TrainConfig)
    margin: float = 0.0
    resamples: int = BOOTSTRAP_RESAMPLES
    level: float = BOOTSTRAP_LEVEL  # two-sided confidence of the interval, in (0, 1)
    seed: int = 0


@dataclass(frozen=True)
class TeamConfig:
    """Team model training and evaluation (`training.team`). Team deals come from the synthetic
    ecosystem's `team_deals`; the win model that gives member fits is fitted on the same split."""

    ecosystem: EcosystemConfig = field(
        default_factory=lambda: EcosystemConfig(partners=1000, deals=10000, team_deals=3000)
    )
    win_model: WinModelConfig = field(default_factory=WinModelConfig)
    # Signs as models.team.TEAM_MONOTONE_DIRECTIONS says (fits up; load and hand-offs down).
    team_model: TeamModelConfig = field(default_factory=TeamModelConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    encoder: str = "hashing-64"
    candidates_per_requirement: int = 20  # FAISS nearest by text, plus as many strongest by win model
    max_members: int = 7  # as many as requirements: the per-requirement baseline has no limit either
    evaluation_deals: int = 200  # test-window team deals whose assembled teams are scored by the truth
    # Fewer validation team deals than this: promotion falls back to the in-sample train + calibration
    # comparison (said so in the decision), as a log-loss on a handful of deals is mostly noise.
    min_validation_team_deals: int = 30
    exact_candidates: int = 5  # per requirement, for the optimiser-vs-exhaustive comparison
    batch_deals: int = 1000  # global vs greedy assignment
    batch_candidates: int = 10  # per deal, by win probability
    batch_capacity: int = 1  # deals of the batch one partner can take (capacity-tight)
    exposure_share: float = 0.6  # of the batch's assigned deals, to emerging partners (above greedy's ~0.5)
    emerging_tenure_days: float = EMERGING_TENURE_DAYS  # as models.assignment.emerging_partners reads it
    bootstrap: int = 2000
    seed: int = 0


ConfigT = TypeVar("ConfigT")


def apply_overrides(config: ConfigT, overrides: dict[str, Any]) -> ConfigT:
    """Nested dict -> a new frozen config; unknown keys raise ValueError naming the key."""
    known = {item.name: item for item in fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown config key {key!r}; known: {sorted(known)}")
        current = getattr(config, key)
        changes[key] = apply_overrides(current, value) if is_dataclass(current) and isinstance(value, dict) else value
    return replace(config, **changes)  # type: ignore[type-var]


def load_train_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- TOML file <- explicit overrides (e.g. from CLI options)."""
    config = TrainConfig()
    if path is not None:
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        with path.open("rb") as handle:
            config = apply_overrides(config, tomllib.load(handle))
    return apply_overrides(config, overrides or {})


def _parse_param(kind: type, text: str) -> Any:
    """A logged param's string back to `kind` (str, int, float; bool as logged: "True"/"False")."""
    if kind is bool:
        if text not in ("True", "False"):
            raise ValueError(f"expected True or False, got {text!r}")
        return text == "True"
    return kind(text)


def config_from_params(default: ConfigT, params: Mapping[str, str], prefix: str) -> ConfigT:
    """`default` with every field read back from flat string params named `<prefix><field>`, as
    `training.tracking.Run.log_params` logs a config; each value is parsed by the type of the
    field's default (str, int, float or bool). Raises ValueError naming a missing or unparsable param.
    """
    values: dict[str, Any] = {}
    for item in fields(default):  # type: ignore[arg-type]
        name = f"{prefix}{item.name}"
        if name not in params:
            raise ValueError(f"param {name} was not logged")
        kind = type(getattr(default, item.name))
        if kind not in (str, int, float, bool):
            raise ValueError(f"param {name}: a {kind.__name__} field cannot be read back from a string")
        try:
            values[item.name] = _parse_param(kind, params[name])
        except ValueError as error:
            raise ValueError(f"param {name}: {error}") from error
    return replace(default, **values)  # type: ignore[type-var]


@dataclass(frozen=True)
class SentimentConfig:
    """Sentiment and frustration heads (`training.sentiment`). The regularisation strengths are first
    guesses, not tuned on test data: on PhraseBank embedding_c 3 or tfidf_c 30 moved macro-F1 by < 0.01."""

    encoder: str = "minilm-onnx-int8"
    encode_batch_size: int = 32  # bulk encoding; serving encodes one text per request
    threads: int = 2
    tfidf_features: int = 2**17  # hashed n-gram columns
    tfidf_ngram_max: int = 2
    embedding_c: float = 1.0  # inverse L2 strength of the logistic regressions
    tfidf_c: float = 10.0
    blend_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # embedding share, chosen on calibration rows
    balance_sources: bool = True  # equal total weight per training corpus (PhraseBank is 1/10 of GoEmotions)
    calibration_share: float = 0.15  # of the training rows: blend choice, temperature and Platt scaling
    validation_share: float = 0.15  # of the training rows (train-sentiment): promotion by macro-F1
    phrasebank_test_share: float = 0.2  # sentences held out of PhraseBank for the reported test
    max_iter: int = 300
    tolerance: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class HealthConfig:
    """Partner health and the disengagement model (`training.health`).

    As-of times run every `step_days` from `warmup_days` after the history starts (so trend windows
    are filled) to `horizon` before its end (so the label is observed). Partners are split by a hash
    of their id: `test_share` are never fitted on, `calibration_share` calibrate; in time, training
    and calibration rows end (as-of + horizon) before `train_until_share` of the history and test
    rows start after it."""

    # Portal activity and messages at realistic rates (several logins and a message a month): at the
    # generator's default of one event a month, a 30-day window holds 0-2 events and no method tells
    # a decline from Poisson noise (measured: ROC-AUC ~0.5 for the model and the rule alike).
    ecosystem: EcosystemConfig = field(
        default_factory=lambda: EcosystemConfig(
            deals=30000, days=1095, engagement_per_partner_month=6.0, messages_per_partner_month=1.0
        )
    )
    step_days: int = 14
    warmup_days: int = 180
    train_until_share: float = 0.6
    test_share: float = 0.25
    calibration_share: float = 0.2
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 2  # stumps (an additive model): few positives, a few % of rows
    min_child_samples: int = 200
    l2_regularisation: float = 10.0
    calibration: CalibrationChoice = "auto"
    rule_decline_ratio: float = 0.5  # baseline: alert when the 30-day engagement rate is at most this share of before
    watch_multiple: float = 3.0  # bands: at_risk holds the base-rate share of training rows, watch up to this multiple
    bootstrap_resamples: int = 200
    seed: int = 0
