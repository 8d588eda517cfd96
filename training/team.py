"""Fit, evaluate and register the team model (`partnermatch-team`).

Flow: ecosystem with team deals -> pair dataset and time split (as `training.train`) -> win model
on train | calibration -> one feature row per historical team deal (`models.team.team_features` of
the team that worked it, member fits from the win model) -> LightGBM + Platt on the team deals of
the train | calibration windows -> evaluation on the later team deals:
- observed outcomes: the team model vs the weakest-link fit alone (`min_fit`);
- assembled teams scored by the latent truth: ours vs the best single-product partner per
  requirement (`best_single`) and a random valid team (`random_team`), with bootstrap intervals
  of the margins, and the oracle team (our optimiser run on the true probability);
- the optimiser against exhaustive search on the same instances cut to a few candidates;
- global batch assignment against greedy routing on a capacity-tight batch of held-out deals.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from features import schema
from features.embed import Encoder, make_encoder
from features.index import PartnerIndex
from features.pairs import FeatureContext, pair_feature_matrix
from features.progress import SILENT, Progress
from features.synthetic import GroundTruth, team_deal_probability
from features.teams import CoSellHistory, requirement_batch, team_members
from models.assignment import assign_globally, assign_greedily, emerging_partners
from models.calibration import Calibrator, select_calibrator
from models.registry import CHAMPION, REGISTERED_TEAM_MODEL, Paths, download_bundle, version_by_alias
from models.team import (
    TEAM_FEATURES,
    TEAM_MIN_FIT,
    TEAM_MODEL_DIR,
    TEAM_MONOTONE_DIRECTIONS,
    TeamInstance,
    TeamLimits,
    TeamModel,
    TeamScorer,
    assemble_teams,
    build_instance,
    exact_best_team,
    load_team_model,
    model_scorer,
    team_features,
)
from models.win import WinModel
from training import evaluate, tracking
from training.config import TeamConfig
from training.stages import (
    ChampionScore,
    PairDataset,
    build_dataset,
    decide_promotion,
    embed_ecosystem,
    routing_bundle,
    split_boundaries,
    time_split,
)
from training.win_model import PairFrame, SingleFeatureBaseline, WinModelTrainer


@dataclass(frozen=True)
class TeamReport:
    metrics: dict[str, Any]  # JSON: observed-outcome metrics, assembly, optimality, batch assignment
    version: tracking.RegisteredVersion
    alias: str
    decision: str
    team_model: TeamModel
    win_model: WinModel
    promotion_deal_rows: np.ndarray  # (p,) int deal rows whose outcomes decided promotion
    test_deal_rows: np.ndarray  # (t,) int deal rows of the test window: observed-outcome metrics
    assembled_deal_rows: np.ndarray  # (a,) int deal rows of `test_deal_rows` whose teams were assembled


@dataclass(frozen=True)
class PromotionWindow:
    """The team deals that decide promotion and, in words, which they are and why."""

    deals: PairFrame
    scored_on: str  # "validation" or "in-sample"
    basis: str


def historical_team_frame(
    dataset: PairDataset, ecosystem: schema.Ecosystem, win_model: WinModel, history: CoSellHistory
) -> tuple[PairFrame, np.ndarray]:
    """One row per historical team deal: TEAM_FEATURES of the team that worked it and its outcome.
    Returns the frame (group id = deal row) and (t,) deal creation seconds."""
    members = team_members(ecosystem.outcomes)
    if members.empty:
        raise ValueError("the ecosystem has no team deals (EcosystemConfig.team_deals)")
    deal_position = pd.Series(np.arange(len(ecosystem.deals)), index=ecosystem.deals[schema.DEAL_ID].astype(str))
    context = dataset.context
    rows, labels, features = [], [], []
    for deal_id, team in members.groupby(schema.DEAL_ID, sort=False):
        deal_row = int(deal_position[str(deal_id)])
        member_rows = np.array([context.partner_position[p] for p in team[schema.PARTNER_ID].astype(str)])
        covered_by = {
            product: partner
            for partner, cell in zip(team[schema.PARTNER_ID].astype(str), team[schema.COVERS_PRODUCT], strict=True)
            for product in schema.split_list(cell)
        }
        products = [context.products[p] for p in np.flatnonzero(dataset.deals.product_mask[deal_row])]
        instance = build_instance(context, win_model, history, dataset.deals, deal_row, [member_rows] * len(products))
        union = instance.partner_ids.astype(str).tolist()
        assignment = np.array([union.index(covered_by[product]) for product in products], dtype=np.int64)
        features.append(team_features(instance, assignment)[0])
        rows.append(deal_row)
        labels.append(int(team[schema.WON].iloc[0]))
    deal_rows = np.array(rows)
    frame = PairFrame(
        features=pd.DataFrame(np.array(features), columns=list(TEAM_FEATURES)),
        labels=np.array(labels),
        group_ids=deal_rows,
        source_rows=deal_rows,
    )
    return frame, dataset.deals.created_seconds[deal_rows]


def candidate_rows(
    context: FeatureContext,
    win_model: WinModel,
    index: PartnerIndex,
    product_vectors: np.ndarray,
    dataset: PairDataset,
    deal_row: int,
    per_requirement: int,
) -> list[np.ndarray]:
    """Per requirement of the deal: the `per_requirement` nearest eligible partners by text (FAISS,
    query = requirement text + product name) and the `per_requirement` strongest by win-model fit
    on the requirement alone. Eligible: operating in the deal's region, joined before the deal."""
    deals = dataset.deals
    eligible = np.flatnonzero(
        context.partner_regions[:, deals.region_index[deal_row]]
        & (context.partner_joined_seconds < deals.created_seconds[deal_row])
    )
    products = np.flatnonzero(deals.product_mask[deal_row])
    queries = deals.vectors[deal_row][None, :] + product_vectors[products]
    queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    nearest, _ = index.search(queries.astype(np.float32), min(len(index), 4 * per_requirement))
    sub_deals = requirement_batch(
        deals, np.full(products.size * eligible.size, deal_row), np.repeat(products, eligible.size)
    )
    fit = win_model.predict_win_probability(
        pair_feature_matrix(context, sub_deals, np.arange(sub_deals.amount.size), np.tile(eligible, products.size))
    ).reshape(products.size, eligible.size)
    lists = []
    for k in range(products.size):
        by_text = nearest[k][np.isin(nearest[k], eligible)][:per_requirement]
        by_fit = eligible[np.argsort(-fit[k], kind="stable")[:per_requirement]]
        lists.append(np.unique(np.concatenate((by_text, by_fit))))
    return lists


def truth_scorer(
    truth: GroundTruth, ecosystem: schema.Ecosystem, deal: pd.DataFrame, context: FeatureContext
) -> TeamScorer:
    """Score teams of the one-row `deal` by the latent truth (`team_deal_probability`)."""
    product_column = {product: schema.PRODUCTS.index(product) for product in context.products}

    def score(instance: TeamInstance, assignment: np.ndarray) -> np.ndarray:
        assignment = np.atleast_2d(assignment)
        member_ids = np.full((assignment.shape[0], len(schema.PRODUCTS)), "", dtype=object)
        for k, product in enumerate(instance.products):
            covered = assignment[:, k] >= 0
            member_ids[covered, product_column[product]] = instance.partner_ids[assignment[covered, k]]
        return team_deal_probability(truth, ecosystem, deal, np.zeros(assignment.shape[0], dtype=np.int64), member_ids)

    return score


def bootstrap_margin(ours: np.ndarray, other: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """Mean of ours - other over deals with a 95% percentile bootstrap interval (resampling deals)."""
    difference = ours - other
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, difference.size, size=(resamples, difference.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"margin": float(difference.mean()), "ci_low": float(low), "ci_high": float(high)}


def evaluate_assembly(
    config: TeamConfig,
    dataset: PairDataset,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth,
    win_model: WinModel,
    team_model: TeamModel,
    history: CoSellHistory,
    encoder: Encoder,
    deal_rows: np.ndarray,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Assemble teams for held-out team deals and score them by the truth; compare the optimiser
    with exhaustive search on the same instances cut to `exact_candidates` per requirement."""
    context = dataset.context
    index = PartnerIndex.build(context.partner_ids.tolist(), context.partner_vectors)
    product_vectors = encoder.encode(list(context.products))
    limits = TeamLimits(max_members=config.max_members)
    ours_model = model_scorer(team_model)
    rng = np.random.default_rng(config.seed)
    systems: dict[str, list[float]] = {"model": [], "best_single": [], "random_team": [], "oracle_team": []}
    optimiser, exact = [], []
    for done, deal_row in enumerate(deal_rows.tolist()):
        progress.count(done, deal_rows.size)
        lists = candidate_rows(
            context, win_model, index, product_vectors, dataset, deal_row, config.candidates_per_requirement
        )
        instance = build_instance(context, win_model, history, dataset.deals, deal_row, lists)
        by_truth = truth_scorer(truth, ecosystem, ecosystem.deals.iloc[[deal_row]], context)
        best_single = np.array([instance.candidates(k)[0] for k in range(len(instance.products))])
        random_team = np.array([rng.choice(instance.candidates(k)) for k in range(len(instance.products))])
        teams = {
            "model": assemble_teams(instance, ours_model, limits, top_k=1)[0].assignment,
            "best_single": best_single,
            "random_team": random_team,
            "oracle_team": assemble_teams(instance, by_truth, limits, top_k=1)[0].assignment,
        }
        scores = by_truth(instance, np.array(list(teams.values())))
        for name, score in zip(teams, scores.tolist(), strict=True):
            systems[name].append(score)
        small = instance.restricted(_top_mask(instance, config.exact_candidates))
        optimiser.append(assemble_teams(small, ours_model, limits, top_k=1)[0].win_probability)
        exact.append(exact_best_team(small, ours_model, limits).win_probability)
    progress.count(deal_rows.size, deal_rows.size)
    values = {name: np.array(scores) for name, scores in systems.items()}
    ratio = np.array(optimiser) / np.array(exact)
    return {
        "deals": int(deal_rows.size),
        "true_win_probability": {name: float(scores.mean()) for name, scores in values.items()},
        "model_vs_best_single": bootstrap_margin(values["model"], values["best_single"], config.bootstrap, config.seed),
        "model_vs_random_team": bootstrap_margin(values["model"], values["random_team"], config.bootstrap, config.seed),
        "model_vs_oracle_team": bootstrap_margin(values["model"], values["oracle_team"], config.bootstrap, config.seed),
        "optimiser_vs_exact": {
            "instances": int(ratio.size),
            "mean_gap": float(1.0 - ratio.mean()),
            "max_gap": float(1.0 - ratio.min()),
            "above_exact": int((np.array(optimiser) > np.array(exact) + 1e-12).sum()),
            "exact_found": int((ratio >= 1.0 - 1e-12).sum()),
        },
    }


def _top_mask(instance: TeamInstance, count: int) -> np.ndarray:
    """(K, U) bool: the `count` best-fit candidates of each requirement."""
    keep = np.zeros(instance.fit.shape, dtype=bool)
    for k in range(len(instance.products)):
        keep[k, instance.candidates(k)[:count]] = True
    return keep


def evaluate_batch_assignment(
    config: TeamConfig, dataset: PairDataset, win_model: WinModel, deal_rows: np.ndarray
) -> dict[str, Any]:
    """Global assignment vs greedy routing of one batch of deals: each deal's `batch_candidates`
    most probable eligible partners, each partner able to take `batch_capacity` deals, and the
    global plan held to `exposure_share` of its deals on emerging partners."""
    context, deals = dataset.context, dataset.deals
    as_of = int(deals.created_seconds[deal_rows].min())
    pair_deals, pair_partners = [], []
    for deal_row in deal_rows.tolist():
        eligible = np.flatnonzero(context.partner_regions[:, deals.region_index[deal_row]])
        pair_deals.append(np.full(eligible.size, deal_row))
        pair_partners.append(eligible)
    deal_of, partner_of = np.concatenate(pair_deals), np.concatenate(pair_partners)
    probability = win_model.predict_win_probability(pair_feature_matrix(context, deals, deal_of, partner_of))
    batch_position = np.searchsorted(np.sort(deal_rows), deal_of)
    order = np.lexsort((-probability, batch_position))
    rank = np.arange(order.size) - np.searchsorted(batch_position[order], batch_position[order], side="left")
    keep = order[rank < config.batch_candidates]
    candidates = np.full((deal_rows.size, config.batch_candidates), -1, dtype=np.int64)
    candidate_probability = np.zeros(candidates.shape)
    slot = rank[rank < config.batch_candidates]
    candidates[batch_position[keep], slot] = partner_of[keep]
    candidate_probability[batch_position[keep], slot] = probability[keep]
    emerging = emerging_partners(
        context.partner_joined_seconds, context.partner_capacity, as_of, config.emerging_tenure_days
    )
    capacity = np.full(len(context.partner_ids), config.batch_capacity, dtype=np.int64)
    greedy = assign_greedily(candidates, candidate_probability, capacity)
    unconstrained = assign_globally(candidates, candidate_probability, capacity)
    exposed = assign_globally(candidates, candidate_probability, capacity, emerging, config.exposure_share)
    return {
        "deals": int(deal_rows.size),
        "candidates_per_deal": config.batch_candidates,
        "capacity_per_partner": config.batch_capacity,
        "greedy_expected_wins": greedy.expected_wins,
        "global_expected_wins": unconstrained.expected_wins,
        "global_lift": unconstrained.expected_wins / max(greedy.expected_wins, 1e-12) - 1.0,
        "global_with_exposure_expected_wins": exposed.expected_wins,
        "exposure_share_target": config.exposure_share,
        "exposure_share_met": exposed.emerging_share(emerging),
        "exposure_share_greedy": greedy.emerging_share(emerging),
        "assigned": {"greedy": int((greedy.partner_rows >= 0).sum()), "global": int((exposed.partner_rows >= 0).sum())},
        "max_partner_exposure": int(exposed.exposure.max()),
    }


def fit_team_model(config: TeamConfig, train: PairFrame, calibration: PairFrame) -> TeamModel:
    """Logistic regression on the team features of the train window (L-BFGS-B on the mean
    log-loss plus `config.team_model.l2` on standardised coefficients, signs bounded by
    TEAM_MONOTONE_DIRECTIONS), then the calibration map on the calibration window."""
    features = train.features[list(TEAM_FEATURES)].to_numpy(dtype=np.float64)
    labels = train.labels.astype(np.float64)
    mean, spread = features.mean(axis=0), features.std(axis=0)
    spread[spread == 0] = 1.0  # a constant feature keeps coefficient 0 under the penalty
    standard = (features - mean) / spread
    penalty = config.team_model.l2

    def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        logits = weights[0] + standard @ weights[1:]
        residual = 1.0 / (1.0 + np.exp(-logits)) - labels
        value = float(np.mean(np.logaddexp(0.0, logits) - labels * logits) + penalty * weights[1:] @ weights[1:])
        gradient = np.concatenate(([residual.mean()], standard.T @ residual / labels.size + 2 * penalty * weights[1:]))
        return value, gradient

    signs = [TEAM_MONOTONE_DIRECTIONS.get(name, 0) for name in TEAM_FEATURES]
    bounds = [(None, None)] + [(0.0, None) if sign > 0 else (None, 0.0) if sign < 0 else (None, None) for sign in signs]
    result = minimize(loss, np.zeros(len(TEAM_FEATURES) + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    coefficients = result.x[1:] / spread
    uncalibrated = TeamModel(
        feature_names=TEAM_FEATURES,
        coefficients=tuple(coefficients.tolist()),
        intercept=float(result.x[0] - coefficients @ mean),
        reference=tuple(mean.tolist()),
        calibrator=Calibrator("none"),
    )
    selection = select_calibrator(
        config.team_model.calibration, uncalibrated.raw_score(calibration.features), calibration.labels
    )
    return replace(uncalibrated, calibrator=selection.calibrator)


def _team_windows(frame: PairFrame, seconds: np.ndarray, cuts: np.ndarray) -> dict[str, PairFrame]:
    """train | calibration | validation | test team deals by the pair split's cut times: the model is
    fitted and calibrated on the first two, promoted on validation, reported (and its teams assembled)
    on test only."""
    window = np.searchsorted(cuts, seconds, side="right")
    return {
        name: PairFrame(
            features=frame.features[window == index].reset_index(drop=True),
            labels=frame.labels[window == index],
            group_ids=frame.group_ids[window == index],
            source_rows=frame.source_rows[window == index],
        )
        for index, name in enumerate(("train", "calibration", "validation", "test"))
    }


def promotion_window(windows: dict[str, PairFrame], minimum_deals: int) -> PromotionWindow:
    """The validation team deals when they are at least `minimum_deals`; otherwise (a small history
    whose validation window holds few team deals) the train + calibration team deals, an in-sample
    comparison that the basis says is one. The test window never decides."""
    validation = windows["validation"]
    if len(validation) >= minimum_deals:
        return PromotionWindow(validation, "validation", f"on the same {len(validation)} validation team deals")
    fitted = PairFrame(
        features=pd.concat([windows["train"].features, windows["calibration"].features], ignore_index=True),
        labels=np.concatenate([windows["train"].labels, windows["calibration"].labels]),
        group_ids=np.concatenate([windows["train"].group_ids, windows["calibration"].group_ids]),
        source_rows=np.concatenate([windows["train"].source_rows, windows["calibration"].source_rows]),
    )
    return PromotionWindow(
        fitted,
        "in-sample",
        f"in sample, on the same {len(fitted)} train + calibration team deals: the validation window holds "
        f"{len(validation)} team deals, fewer than {minimum_deals}",
    )


def run_team_training(
    config: TeamConfig, paths: Paths, ecosystem: schema.Ecosystem, truth: GroundTruth, progress: Progress = SILENT
) -> TeamReport:
    """Fit the win and team models, evaluate against baselines and the truth, register the team
    bundle as `partnermatch-team` (champion when none exists or it beats the champion's log-loss on
    the same `promotion_window` team deals). Every reported metric is on the test window only."""
    encoder = make_encoder(config.encoder, paths.cache_dir)
    dataset = build_dataset(ecosystem, embed_ecosystem(ecosystem, encoder, progress), progress)
    splits = time_split(dataset, config.split)
    progress.step("fitting the win model")
    win_model = WinModelTrainer(config.win_model).fit(splits.train, splits.calibration).model_
    history = CoSellHistory.build(ecosystem.outcomes, pd.Index(dataset.context.partner_ids))
    progress.step("team features for the historical team deals")
    team_frame, team_seconds = historical_team_frame(dataset, ecosystem, win_model, history)
    cuts = split_boundaries(dataset.row_seconds, dataset.rows.group_ids, config.split)
    windows = _team_windows(team_frame, team_seconds, cuts)
    progress.step(f"fitting the team model on {len(windows['train'])} team deals")
    team_model = fit_team_model(config, windows["train"], windows["calibration"])
    weakest_link = SingleFeatureBaseline("min_fit", TEAM_MIN_FIT).fit(windows["train"], windows["calibration"])
    test = windows["test"]
    promotion = promotion_window(windows, config.min_validation_team_deals)
    metrics: dict[str, Any] = {
        "model": evaluate.binary_metrics(test.labels, team_model.predict_win_probability(test.features)),
        "min_fit": evaluate.binary_metrics(test.labels, weakest_link.predict_win_probability(test.features)),
        "rows": {name: len(frame) for name, frame in windows.items()},
    }
    rng = np.random.default_rng(config.seed)
    held_out = np.sort(rng.choice(test.group_ids, size=min(config.evaluation_deals, len(test)), replace=False))
    progress.step(f"assembling teams for {held_out.size} test-window team deals")
    metrics["assembly"] = evaluate_assembly(
        config, dataset, ecosystem, truth, win_model, team_model, history, encoder, held_out, progress
    )
    team_deal_rows = np.unique(team_frame.group_ids)
    solo_test = np.setdiff1d(np.unique(splits.test.group_ids), team_deal_rows)
    batch = np.sort(rng.choice(solo_test, size=min(config.batch_deals, solo_test.size), replace=False))
    progress.step(f"global vs greedy assignment of {batch.size} deals")
    metrics["batch_assignment"] = evaluate_batch_assignment(config, dataset, win_model, batch)

    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(paths, "train-team-model") as run:
        workdir = Path(tmp)
        run.log_params({"team": {key: value for key, value in asdict(config).items() if key != "ecosystem"}})
        run.log_params({"ecosystem": asdict(config.ecosystem)})
        run.log_params({"team_promotion_deals": promotion.basis})
        run.log_metrics({"test": metrics})
        bundle = routing_bundle(
            REGISTERED_TEAM_MODEL, config.encoder, win_model, dataset, ecosystem, len(windows["train"])
        )
        bundle_dir = bundle.save(workdir / "bundle")
        team_model.save(bundle_dir / TEAM_MODEL_DIR)
        champion = version_by_alias(paths, REGISTERED_TEAM_MODEL, CHAMPION)
        champion_score = None
        if champion is not None:
            champion_model = load_team_model(download_bundle(paths, champion, workdir / "champion"))
            log_loss = evaluate.binary_metrics(
                promotion.deals.labels, champion_model.predict_win_probability(promotion.deals.features)
            )
            champion_score = ChampionScore(champion.version, log_loss["log_loss"], promotion.basis)
        version = tracking.register_bundle(
            run, bundle_dir, REGISTERED_TEAM_MODEL, TEAM_FEATURES, {"encoder": encoder.name}, pyfunc="team"
        )
        ours = evaluate.binary_metrics(
            promotion.deals.labels, team_model.predict_win_probability(promotion.deals.features)
        )
        promoted, decision = decide_promotion("log_loss", ours["log_loss"], champion_score, promotion.scored_on)
        decision = f"{decision}; promotion decided {promotion.basis}"
        alias = tracking.mark_version(paths, REGISTERED_TEAM_MODEL, version.version, promoted, decision, ours)
    return TeamReport(
        metrics=metrics,
        version=version,
        alias=alias,
        decision=decision,
        team_model=team_model,
        win_model=win_model,
        promotion_deal_rows=promotion.deals.group_ids,
        test_deal_rows=test.group_ids,
        assembled_deal_rows=held_out,
    )
