"""The headline evidence: a year of deals routed day by day on a synthetic ecosystem, five routers on
the same deal stream and the same outcome draws (common random numbers).

The world is the demo ecosystem generated over its history window and `months` more at the same
deal rate; the deals created after the history window are the stream (the generator's own routing
of them is ignored). Each router gets every stream deal, in creation order, and sends it to one
partner; each router lives in its own copy of the market, because whom it chose changes the load its
partners carry. Per router:

- frozen: the first model (fitted on the history) with its features frozen at the history end;
- live: the same model, its features moved every day by the outcomes that closed and the engagement
  that occurred (`serving.feedback.router_with_history`, the service's live features);
- live_retrain: live, and at the start of every month a challenger fitted on the history plus
  everything that came back (`training.stages`), compared with the champion on the recent deals and
  promoted past the margin (`training.retrain`), as `partnermatch retrain` does;
- round_robin: today's rule: smooth weighted round robin (weights: declared capacity) among the
  partners certified on every product of the deal, else the whole pool;
- oracle: the partner with the highest true win probability (`features.synthetic.oracle`).

The CRM hands every router the same kind of pool: partners that have joined, operate in the deal's
region and are below their declared capacity (deals assigned in the last `schema.LOAD_WINDOW`, legacy
and routed, as the CRM knows its own assignments); when nobody is below it, everyone in the region.
The model routers rank that pool with the pure `serving.routing.Router` (`candidate_pool`).

Truth: the chosen partner's true win probability counts its load in that router's market (legacy
attempts plus that router's assignments) against its true capacity, so overloaded partners win less.
A deal is won when its common uniform draw is below that probability; it closes when the generator
closed it, and only then do live routers hear about it (the CRM reports outcomes, not assignments).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from features import schema
from features.embed import Encoder, make_encoder
from features.index import PartnerIndex
from features.pairs import SECONDS_PER_DAY, EventIndex, positions, product_mask, recent_attempts, to_seconds
from features.progress import SILENT, Progress
from features.synthetic import EcosystemConfig, GroundTruth, generate_ecosystem
from features.synthetic.oracle import attempt_probability, load_events
from models.registry import REGISTERED_WIN_MODEL
from models.win import WinModel
from serving.feedback import router_with_history
from serving.routing import Router
from serving.schemas import DealIn, ModelInfo, RouteOptions, RouteRequest
from training.config import RetrainConfig, TrainConfig
from training.evaluate import BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, bootstrap_interval
from training.retrain import Comparison, FeedbackTables, compare_with_champion, decide_retrain_promotion, with_feedback
from training.stages import PairDataset, TimeSplits, build_dataset, embed_ecosystem, time_split
from training.win_model import WinModelTrainer

FROZEN, LIVE, LIVE_RETRAIN, ROUND_ROBIN, ORACLE = "frozen", "live", "live_retrain", "round_robin", "oracle"
ROUTERS = (FROZEN, LIVE, LIVE_RETRAIN, ROUND_ROBIN, ORACLE)
MODEL_ROUTERS = (FROZEN, LIVE, LIVE_RETRAIN)
DAYS_PER_MONTH = 30
_DAY = SECONDS_PER_DAY
_LOAD_WINDOW_SECONDS = int(schema.LOAD_WINDOW.total_seconds())


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated year. `history` is the ecosystem before the stream (the demo ecosystem by
    default: its partners, deal rate and window); `retrain` is the recipe of the first model and of
    every monthly challenger, and the promotion margin; `seed` draws the outcomes."""

    history: EcosystemConfig = field(default_factory=EcosystemConfig)
    months: int = 12
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    resamples: int = BOOTSTRAP_RESAMPLES  # bootstrap draws of the lift intervals (deals resampled)
    level: float = BOOTSTRAP_LEVEL  # two-sided confidence of the lift intervals, in (0, 1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.months < 1:
            raise ValueError(f"months must be >= 1, got {self.months}")

    @property
    def world(self) -> EcosystemConfig:
        """The generated ecosystem: the history window plus the stream's months, at the same deal rate."""
        days = self.history.days + self.months * DAYS_PER_MONTH
        return replace(self.history, days=days, deals=round(self.history.deals * days / self.history.days))


@dataclass(frozen=True)
class Market:
    """What every router's market starts from. n partners (rows of `truth`), m stream deals; products
    and regions in `schema.PRODUCTS` / `schema.REGIONS` order (the truth's)."""

    truth: GroundTruth
    history: schema.Ecosystem  # known at the start: deals whose outcomes closed before it, those, earlier engagement
    start_seconds: int  # the stream's first second (the end of the history window)
    stream: pd.DataFrame  # the m deals routed, DEALS columns, by created_at
    stream_seconds: np.ndarray  # (m,) int64 creation times, non-decreasing
    close_seconds: np.ndarray  # (m,) int64: when each deal closes (the generator's sales cycle)
    stream_products: np.ndarray  # (m, P) bool
    stream_region: np.ndarray  # (m,) int64
    outcome_draws: np.ndarray  # (m,) uniform in [0, 1): won when below the true probability, for every router
    pending_deals: pd.DataFrame  # legacy deals created before the start whose outcomes close during the stream
    pending_outcomes: pd.DataFrame  # their outcome rows
    pending_close_seconds: np.ndarray  # (len(pending_outcomes),) int64
    engagement: pd.DataFrame  # ENGAGEMENT rows occurring during the stream
    engagement_seconds: np.ndarray  # (len(engagement),) int64
    partner_ids: np.ndarray  # (n,) str
    joined_seconds: np.ndarray  # (n,) int64
    operating: np.ndarray  # (n, R) bool, from the partners table
    certification_levels: np.ndarray  # (n, P) int in 0..3, from the partners table
    declared_capacity: np.ndarray  # (n,) float64 deals per LOAD_WINDOW, from the partners table
    legacy_load: EventIndex  # the history's attempts (key: partner row, time: deal creation)

    @property
    def stream_months(self) -> np.ndarray:
        """(m,) 0-based month of each stream deal."""
        return (self.stream_seconds - self.start_seconds) // (DAYS_PER_MONTH * _DAY)

    @property
    def amount(self) -> np.ndarray:
        """(m,) USD of each stream deal."""
        return self.stream[schema.AMOUNT].to_numpy(dtype=np.float64)


def open_market(config: SimulationConfig, progress: Progress = SILENT) -> Market:
    """Generate the world and split it at the end of the history window."""
    ecosystem, truth = generate_ecosystem(config.world, progress=progress)
    start = np.datetime64(config.history.start, "s").astype(np.int64) + config.history.days * _DAY
    deals, outcomes, partners = ecosystem.deals, ecosystem.outcomes, ecosystem.partners
    deal_seconds = to_seconds(deals[schema.CREATED_AT])
    close_seconds = to_seconds(outcomes[schema.CLOSED_AT])
    outcome_deal = positions(outcomes[schema.DEAL_ID], pd.Index(deals[schema.DEAL_ID]), schema.DEAL_ID)
    legacy_rows = deal_seconds[outcome_deal] < start
    known_rows = legacy_rows & (close_seconds < start)
    known_deals = deals[deals[schema.DEAL_ID].isin(set(outcomes.loc[known_rows, schema.DEAL_ID]))]
    pending_rows = legacy_rows & ~known_rows
    stream = deals[deal_seconds >= start].reset_index(drop=True)
    # All rows of a deal close together: the first row's close is the deal's.
    first_row = outcomes.drop_duplicates(schema.DEAL_ID).set_index(schema.DEAL_ID)[schema.CLOSED_AT]
    engagement_seconds = to_seconds(ecosystem.engagement[schema.OCCURRED_AT])
    partner_positions = truth.positions(partners[schema.PARTNER_ID])
    n = truth.partner_ids.size
    operating = np.zeros((n, len(schema.REGIONS)), dtype=bool)
    operating[partner_positions] = np.array(
        [[region in schema.split_list(cell) for region in schema.REGIONS] for cell in partners[schema.PARTNER_REGIONS]]
    )
    levels = np.zeros((n, len(schema.PRODUCTS)), dtype=np.int64)
    levels[partner_positions] = np.array(
        [
            [certified.get(product, 0) for product in schema.PRODUCTS]
            for certified in map(schema.parse_certifications, partners[schema.CERTIFICATIONS])
        ]
    ).reshape(len(partners), len(schema.PRODUCTS))
    joined = np.zeros(n, dtype=np.int64)
    joined[partner_positions] = to_seconds(partners[schema.JOINED_AT])
    capacity = np.zeros(n)
    capacity[partner_positions] = partners[schema.CAPACITY].to_numpy(dtype=np.float64)
    history_outcomes = outcomes[known_rows].reset_index(drop=True)
    progress.step(
        f"history: {len(known_deals):,} deals; stream: {len(stream):,} deals over {config.months} months; "
        f"{int(pending_rows.sum()):,} legacy outcomes still open"
    )
    return Market(
        truth=truth,
        history=schema.Ecosystem(
            partners=partners,
            deals=known_deals.reset_index(drop=True),
            outcomes=history_outcomes,
            engagement=ecosystem.engagement[engagement_seconds < start].reset_index(drop=True),
            communications=ecosystem.communications.iloc[0:0],
        ),
        start_seconds=int(start),
        stream=stream,
        stream_seconds=to_seconds(stream[schema.CREATED_AT]),
        close_seconds=to_seconds(first_row.loc[stream[schema.DEAL_ID]]),
        stream_products=product_mask(stream[schema.DEAL_PRODUCTS], schema.PRODUCTS),
        stream_region=positions(stream[schema.DEAL_REGION], pd.Index(schema.REGIONS), schema.DEAL_REGION),
        outcome_draws=np.random.default_rng(config.seed).random(len(stream)),
        pending_deals=deals[deals[schema.DEAL_ID].isin(set(outcomes.loc[pending_rows, schema.DEAL_ID]))],
        pending_outcomes=outcomes[pending_rows].reset_index(drop=True),
        pending_close_seconds=close_seconds[pending_rows],
        engagement=ecosystem.engagement[engagement_seconds >= start].reset_index(drop=True),
        engagement_seconds=engagement_seconds[engagement_seconds >= start],
        partner_ids=truth.partner_ids,
        joined_seconds=joined,
        operating=operating,
        certification_levels=levels,
        declared_capacity=capacity,
        legacy_load=load_events(
            truth.positions(outcomes.loc[legacy_rows, schema.PARTNER_ID]), deal_seconds[outcome_deal[legacy_rows]]
        ),
    )


class RouterMarket:
    """One router's copy of the market: its assignments so far, in stream order (the loop routes
    every deal to every router, so `count` is also the next deal's index). As `features.pairs.EventSums`
    it is the load history its truth sees: legacy attempts plus its assignments, at deal creation."""

    def __init__(self, market: Market) -> None:
        self.market = market
        size = len(market.stream)
        self.partner = np.full(size, -1, dtype=np.int64)  # (m,) truth row of each routed deal
        self.probability = np.zeros(size)  # (m,) its true win probability
        self.capped = np.zeros(size, dtype=bool)  # (m,) whether the pool held only partners below capacity
        self.count = 0
        self._assigned = np.zeros(market.partner_ids.size, dtype=np.int64)  # (n,) assignments so far

    def sum_before(self, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(q, 1) attempts of partner `keys[i]` whose deal was created before `seconds[i]`."""
        keys, seconds = np.asarray(keys, dtype=np.int64), np.asarray(seconds, dtype=np.int64)
        result = self.market.legacy_load.sum_before(keys, seconds)
        routed = self.market.stream_seconds[: self.count]
        for at in np.unique(seconds):
            rows = seconds == at
            # Assignments before `at` = all of them minus the (recent, few) ones from `at` on.
            later = self.partner[np.searchsorted(routed, at, side="left") : self.count]
            before = self._assigned - np.bincount(later, minlength=self._assigned.size)
            result[rows, 0] += before[keys[rows]]
        return result

    def assign(self, partner: int, probability: float, capped: bool) -> None:
        """Route deal `count` to `partner` (a truth row)."""
        self.partner[self.count], self.probability[self.count], self.capped[self.count] = partner, probability, capped
        self._assigned[partner] += 1
        self.count += 1

    @property
    def won(self) -> np.ndarray:
        """(count,) bool outcome of each routed deal (the common draws)."""
        return self.market.outcome_draws[: self.count] < self.probability[: self.count]

    def feedback(self, since: int, until: int) -> FeedbackTables:
        """What the CRM reported with times in [since, until): outcomes of this router's deals and of
        the legacy deals that closed, and engagement (DEALS / OUTCOMES / ENGAGEMENT columns)."""
        market = self.market
        closed = np.flatnonzero(
            (market.close_seconds[: self.count] >= since) & (market.close_seconds[: self.count] < until)
        )
        routed = market.stream.iloc[closed]
        own = pd.DataFrame(
            {
                schema.DEAL_ID: routed[schema.DEAL_ID].to_numpy(),
                schema.PARTNER_ID: market.partner_ids[self.partner[closed]],
                schema.WON: self.won[closed],
                schema.CLOSED_AT: pd.to_datetime(market.close_seconds[closed], unit="s"),
                schema.TEAM_ID: "",
            }
        )
        legacy = (market.pending_close_seconds >= since) & (market.pending_close_seconds < until)
        legacy_outcomes = market.pending_outcomes[legacy]
        legacy_deals = market.pending_deals[
            market.pending_deals[schema.DEAL_ID].isin(set(legacy_outcomes[schema.DEAL_ID]))
        ]
        engaged = (market.engagement_seconds >= since) & (market.engagement_seconds < until)
        return FeedbackTables(
            deals=pd.concat([legacy_deals, routed], ignore_index=True),
            outcomes=pd.concat([legacy_outcomes, own], ignore_index=True)[list(own.columns)],
            engagement=market.engagement[engaged].reset_index(drop=True),
            sequence=0,
        )


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's): every pick adds each candidate's weight to its credit,
    takes the candidate with the most credit (ties: the lowest row) and takes the candidates' total
    weight off its credit. Among the same candidates, each gets picked in proportion to its weight,
    evenly spread. weights: (n,) > 0."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.credit = np.zeros_like(self.weights)

    def pick(self, candidates: np.ndarray) -> int:
        """One of `candidates` (k >= 1 distinct rows)."""
        self.credit[candidates] += self.weights[candidates]
        chosen = int(candidates[np.argmax(self.credit[candidates])])
        self.credit[chosen] -= self.weights[candidates].sum()
        return chosen


def capacity_pool(market: Market, routed: RouterMarket, deal: int) -> tuple[np.ndarray, bool]:
    """The partners the CRM offers for stream deal `deal`: joined before it, operating in its region
    and below their declared capacity (in `routed`'s market); when none is below it, all who joined
    and operate there (then everyone who joined). Returns (rows, whether the capacity cap held)."""
    seconds = market.stream_seconds[deal]
    rows = np.arange(market.partner_ids.size, dtype=np.int64)
    load = recent_attempts(routed, rows, np.full(rows.size, seconds))
    present = market.joined_seconds < seconds
    in_region = present & market.operating[:, market.stream_region[deal]]
    below = in_region & (load < market.declared_capacity)
    if below.any():
        return rows[below], True
    return rows[in_region if in_region.any() else present], False


def true_probability(market: Market, routed: RouterMarket, deal: int, partners: np.ndarray) -> np.ndarray:
    """(k,) true win probability of `partners` (truth rows) on stream deal `deal` in `routed`'s market."""
    return attempt_probability(
        market.truth,
        routed,
        market.joined_seconds,
        partners,
        np.zeros(partners.size, dtype=np.int64),
        market.stream_seconds[deal : deal + 1],
        market.stream_products[deal : deal + 1],
        market.stream_region[deal : deal + 1],
        market.amount[deal : deal + 1],
        np.empty(0, dtype=np.int64),
    )


def certified_candidates(market: Market, deal: int, pool: np.ndarray) -> np.ndarray:
    """The partners of `pool` certified (level >= 1) on every product of the deal, else `pool`."""
    certified = pool[
        (market.certification_levels[np.ix_(pool, np.flatnonzero(market.stream_products[deal]))] > 0).all(axis=1)
    ]
    return certified if certified.size else pool


def route_request(market: Market, deal: int, pool: np.ndarray) -> RouteRequest:
    """The request a CRM sends for stream deal `deal`: the best one partner of `pool` (no further
    capacity filter: the pool already is the CRM's)."""
    row = market.stream.iloc[deal]
    return RouteRequest(
        deal=DealIn(
            requirement_text=str(row[schema.REQUIREMENT_TEXT]),
            products=list(schema.split_list(row[schema.DEAL_PRODUCTS])),
            region=str(row[schema.DEAL_REGION]),
            amount=float(row[schema.AMOUNT]),
            segment=str(row[schema.SEGMENT]),
            deal_id=str(row[schema.DEAL_ID]),
        ),
        options=RouteOptions(max_results=1, candidate_pool=market.partner_ids[pool].tolist(), respect_capacity=False),
    )


@dataclass(frozen=True)
class FittedModel:
    """A win model fitted with the training stages on what was known, and the data it saw."""

    model: WinModel
    dataset: PairDataset
    splits: TimeSplits


def fit_model(
    known: schema.Ecosystem, config: TrainConfig, encoder: Encoder, progress: Progress = SILENT
) -> FittedModel:
    """Embed -> point-in-time dataset -> time split -> our LightGBM model (no baselines, no registry)."""
    dataset = build_dataset(known, embed_ecosystem(known, encoder, progress), progress)
    splits = time_split(dataset, config.split)
    trainer = WinModelTrainer(config.model).fit(splits.train, splits.calibration)
    return FittedModel(trainer.model_, dataset, splits)


def model_router(
    model: WinModel, dataset: PairDataset, known: schema.Ecosystem, encoder: Encoder, version: str
) -> Router:
    """The serving router of `model` over the history `dataset` indexed (as a bundle would hold it)."""
    context = dataset.context
    return Router(
        model=model,
        context=context,
        index=PartnerIndex.build(context.partner_ids.tolist(), context.partner_vectors),
        encoder=encoder,
        partners=known.partners,
        history_deals=known.deals,
        model_info=ModelInfo(name=REGISTERED_WIN_MODEL, version=version, encoder=encoder.name),
    )


@dataclass(frozen=True)
class RetrainRecord:
    """One monthly retrain of the live_retrain router."""

    month: int  # 0-based month of the stream it serves from
    challenger_version: str
    serving_version: str  # the champion after the decision
    promoted: bool
    decision: str  # in words, as `partnermatch retrain` says it
    comparison: Comparison | None  # champion vs challenger on the recent deals; None: not comparable
    training_rows: int  # rows of the challenger's train window

    def as_json(self) -> dict[str, Any]:
        return {
            "month": self.month + 1,
            "challenger_version": self.challenger_version,
            "serving_version": self.serving_version,
            "promoted": self.promoted,
            "decision": self.decision,
            "training_rows": self.training_rows,
        } | (self.comparison.as_metrics() if self.comparison is not None else {})


@dataclass(frozen=True)
class RouterRun:
    """One router's choices on the stream, (m,) arrays in stream order."""

    partner: np.ndarray  # int64 truth rows
    true_probability: np.ndarray  # in (0, 1), in that router's market
    won: np.ndarray  # bool, the common draws against true_probability
    capped: np.ndarray  # bool: the pool held only partners below their declared capacity


@dataclass(frozen=True)
class SimulationResult:
    month: np.ndarray  # (m,) 0-based month of each stream deal
    amount: np.ndarray  # (m,) USD
    runs: Mapping[str, RouterRun]  # ROUTERS order
    retrains: tuple[RetrainRecord, ...]

    def monthly(self) -> pd.DataFrame:
        """One row per (router, month, 1-based): deals, expected and realised wins, revenue (USD won)
        and expected revenue (sum of true probability x amount)."""
        frames = [
            pd.DataFrame(
                {
                    "router": name,
                    "month": self.month + 1,
                    "deals": 1,
                    "expected_wins": run.true_probability,
                    "realised_wins": run.won.astype(np.int64),
                    "revenue": run.won * self.amount,
                    "expected_revenue": run.true_probability * self.amount,
                }
            )
            for name, run in self.runs.items()
        ]
        table = pd.concat(frames).groupby(["router", "month"], sort=False).sum().reset_index()
        return table

    def totals(self) -> dict[str, dict[str, float]]:
        """Per router: the monthly columns summed over the stream, and the share of capped pools."""
        sums = self.monthly().drop(columns="month").groupby("router", sort=False).sum()
        return {
            name: {column: float(value) for column, value in sums.loc[name].items()}
            | {"capped_share": float(self.runs[name].capped.mean())}
            for name in self.runs
        }


def lift(
    treatment: np.ndarray,
    control: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, float]:
    """Totals of two routers' (m,) per-deal values on the same deals (wins or USD), their difference
    and relative lift (treatment / control - 1), with paired bootstrap intervals over deals."""

    def difference(a: np.ndarray, b: np.ndarray) -> float:
        return float(a.sum() - b.sum())

    def relative(a: np.ndarray, b: np.ndarray) -> float:
        return float(a.sum() / b.sum() - 1.0)

    treatment, control = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    difference_low, difference_high = bootstrap_interval(
        difference, treatment, control, resamples=resamples, level=level, seed=seed
    )
    relative_low, relative_high = bootstrap_interval(
        relative, treatment, control, resamples=resamples, level=level, seed=seed
    )
    return {
        "treatment": float(treatment.sum()),
        "control": float(control.sum()),
        "difference": difference(treatment, control),
        "difference_ci_low": difference_low,
        "difference_ci_high": difference_high,
        "relative": relative(treatment, control),
        "relative_ci_low": relative_low,
        "relative_ci_high": relative_high,
    }


LIFT_PAIRS = ((LIVE_RETRAIN, ROUND_ROBIN), (LIVE_RETRAIN, FROZEN), (LIVE, FROZEN), (ORACLE, ROUND_ROBIN))


def summary(result: SimulationResult, config: SimulationConfig) -> dict[str, Any]:
    """The JSON report: setup, totals and months per router, lifts (won deals, revenue, and their
    expectations) for `LIFT_PAIRS`, and the retrains."""
    measures = {
        "won_deals": lambda run: run.won,
        "revenue": lambda run: run.won * result.amount,
        "expected_wins": lambda run: run.true_probability,
        "expected_revenue": lambda run: run.true_probability * result.amount,
    }
    return {
        "setup": {
            "partners": config.history.partners,
            "history_deals": config.history.deals,
            "history_days": config.history.days,
            "months": config.months,
            "stream_deals": int(result.month.size),
            "encoder": config.retrain.train.encoder,
            "margin": config.retrain.margin,
            "seed": config.seed,
        },
        "totals": result.totals(),
        "lift": {
            f"{treatment}_vs_{control}": {
                name: lift(
                    measure(result.runs[treatment]),
                    measure(result.runs[control]),
                    config.resamples,
                    config.level,
                    config.seed,
                )
                for name, measure in measures.items()
            }
            for treatment, control in LIFT_PAIRS
        },
        "monthly": result.monthly().to_dict(orient="records"),
        "retrains": [record.as_json() for record in result.retrains],
    }


def simulate(config: SimulationConfig, cache_dir: Path | None, progress: Progress = SILENT) -> SimulationResult:
    """Route the stream day by day with every router (see the module docstring). Texts are embedded
    through the encoder cache under `cache_dir` (required by the ONNX encoder); nothing is
    registered in MLflow."""
    market = open_market(config, progress)
    train_config = config.retrain.train
    encoder = make_encoder(train_config.encoder, cache_dir)
    progress.step(f"embedding the stream's {len(market.stream):,} requirement texts")
    encoder.encode(market.stream[schema.REQUIREMENT_TEXT].astype(str).tolist(), progress)
    progress.step("fitting the first model on the history")
    first = fit_model(market.history, train_config, encoder, progress)
    frozen = model_router(first.model, first.dataset, market.history, encoder, "1")
    markets = {name: RouterMarket(market) for name in ROUTERS}
    # Each live router: the router its daily feedback is layered on, and since when that feedback runs.
    live_bases = {LIVE: (frozen, market.start_seconds), LIVE_RETRAIN: (frozen, market.start_seconds)}
    champion = Champion(first.model, "1")
    round_robin = WeightedRoundRobin(np.maximum(market.declared_capacity, 1.0))
    retrains: list[RetrainRecord] = []
    days = config.months * DAYS_PER_MONTH
    day_of_deal = (market.stream_seconds - market.start_seconds) // _DAY
    for day in range(days):
        now = market.start_seconds + day * _DAY
        if day and day % DAYS_PER_MONTH == 0:
            progress.step(f"month {day // DAYS_PER_MONTH + 1}: retraining on the history and the feedback")
            known = with_feedback(market.history, markets[LIVE_RETRAIN].feedback(market.start_seconds, now))
            version = str(len(retrains) + 2)  # the first model is version 1
            record, champion, fitted = retrain(known, champion, config.retrain, encoder, day // DAYS_PER_MONTH, version)
            retrains.append(record)
            progress.step(record.decision)
            live_bases[LIVE_RETRAIN] = (
                model_router(champion.model, fitted.dataset, known, encoder, champion.version),
                now,
            )
        routers = {FROZEN: frozen} | {
            name: router_at(base, markets[name], since, now) for name, (base, since) in live_bases.items()
        }
        # One request at a time, as the service serves them (OMP_NUM_THREADS=1): on a few hundred
        # rows, OpenMP threads only add overhead.
        with threadpool_limits(limits=1, user_api="openmp"):
            for deal in np.flatnonzero(day_of_deal == day).tolist():
                for name, routed in markets.items():
                    route_deal(market, routed, deal, name, routers, round_robin)
        progress.count(day + 1, days)
    return SimulationResult(
        month=market.stream_months,
        amount=market.amount,
        runs={
            name: RouterRun(routed.partner, routed.probability, routed.won, routed.capped)
            for name, routed in markets.items()
        },
        retrains=tuple(retrains),
    )


def router_at(base: Router, routed: RouterMarket, since: int, now: int) -> Router:
    """`base` with the feedback of `routed`'s market reported in [since, now) (seconds) layered on,
    routing as of `now`: the service's live features."""
    feedback = routed.feedback(since, now)
    return router_with_history(base, feedback.deals, feedback.outcomes, feedback.engagement, as_of_seconds=now)


def route_deal(
    market: Market,
    routed: RouterMarket,
    deal: int,
    name: str,
    routers: Mapping[str, Router],
    round_robin: WeightedRoundRobin,
) -> None:
    """Router `name` sends stream deal `deal` to one partner of the CRM's pool in its market."""
    pool, capped = capacity_pool(market, routed, deal)
    if name == ORACLE:
        partner = int(pool[np.argmax(true_probability(market, routed, deal, pool))])
    elif name == ROUND_ROBIN:
        partner = round_robin.pick(certified_candidates(market, deal, pool))
    else:
        response = routers[name].route(route_request(market, deal, pool))
        partner = int(market.truth.positions([response.partners[0].partner_id])[0])
    routed.assign(partner, float(true_probability(market, routed, deal, np.array([partner]))[0]), capped)


@dataclass(frozen=True)
class Champion:
    """The model the live_retrain router serves, and its version ("1" is the first model)."""

    model: WinModel
    version: str


def retrain(
    known: schema.Ecosystem, champion: Champion, config: RetrainConfig, encoder: Encoder, month: int, version: str
) -> tuple[RetrainRecord, Champion, FittedModel]:
    """Fit challenger `version` on `known`, compare it with the champion on the recent deals and
    promote it past `config.margin`. Returns the record, the champion after the decision and the
    challenger's fit (whose dataset indexes `known`)."""
    challenger = fit_model(known, config.train, encoder)
    comparison = compare_with_champion(champion.model, challenger.model, challenger.dataset, challenger.splits, config)
    promoted, decision = decide_retrain_promotion(comparison, config.margin, champion.version)
    after = Champion(challenger.model, version) if promoted else champion
    record = RetrainRecord(month, version, after.version, promoted, decision, comparison, len(challenger.splits.train))
    return record, after, challenger
