"""The latent truth behind a synthetic ecosystem: what the generator drew and the tables do not show.

`GroundTruth` holds per-partner skills, capacities and deal-size sweet spots, the pair affinities,
the disengagement episodes, the true model's coefficients and the true probability of every
historical attempt; it answers point lookups (partner positions, "inside an episode at t?", pair
affinity) and is saved beside the tables (`save` / `load`). The true model itself is in
`features.synthetic.oracle`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from features import pairs, schema

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]
PartnerIds: TypeAlias = Sequence[str] | pd.Series | np.ndarray

NON_OPERATING_REGION_SKILL = -3.0

# Columns of the ground-truth tables (the ecosystem tables' columns live in features.schema).
PARTNER_A = "partner_a"
PARTNER_B = "partner_b"
AFFINITY = "affinity"
EPISODE_START = "start"
EPISODE_END = "end"
# The drift before each episode: days before its start at which message sentiment and engagement
# begin to slide, and how far they slide (a share of the full slide, in (0, 1]).
SENTIMENT_ONSET_DAYS = "sentiment_onset_days"
ENGAGEMENT_ONSET_DAYS = "engagement_onset_days"
DRIFT_STRENGTH = "drift_strength"
TRUTH_DIRNAME = "truth"
TEAM_COEFFICIENTS_FILE = "team_coefficients.json"
# The GroundTruth fields stored in truth/arrays.npz, in file order.
_ARRAY_FIELDS = (
    "partner_ids",
    "product_skill",
    "region_skill",
    "certification_levels",
    "true_capacity",
    "size_sweet_spot",
    "outcome_probability",
    "message_sentiment",
)


@dataclass(frozen=True)
class TruthCoefficients:
    """Coefficients of the true win logit, in logits per unit of each term (see
    `features.synthetic.oracle.true_win_logit`)."""

    intercept: float = -1.3
    skill: float = 0.9  # per logit of mean product skill over the deal's products
    region: float = 0.6  # per unit of region skill in the deal's region (>= 0 where operating, else -3)
    certification: float = 0.8  # at full coverage: expert (level 3) in every product of the deal
    size_fit: float = 0.35  # per e-fold between the amount and the partner's sweet spot
    overload: float = 1.0  # per unit of load ratio above 1
    new_partner: float = 1.0  # at tenure 0, decaying with e-folding time 90 days
    disengaged: float = 1.5  # while the deal date is inside a disengagement episode
    affinity: float = 1.0  # co-sell teams only, per unit of pair affinity in [-1, 1]


@dataclass(frozen=True)
class TeamCoefficients:
    """The true model of team deals (several requirements, won or lost as a team), in logits; see
    `features.synthetic.oracle.true_team_deal_probability`."""

    requirement_shift: float = 1.8  # a member delivers its requirement with sigmoid(solo logit + this)
    affinity: float = 1.2  # per unit of mean pair affinity between members, in [-1, 1]
    coordination: float = 0.15  # per member beyond the first


class EpisodeIndex:
    """Disengagement episodes sorted by (partner position, start) for vectorised point lookups.

    positions, start_seconds, end_seconds: (e,) int64, one row per episode [start, end), episodes
    of one partner not overlapping; times in seconds since 1970.
    """

    def __init__(self, positions: IntArray, start_seconds: IntArray, end_seconds: IntArray) -> None:
        order = np.lexsort((start_seconds, positions))
        self.rows = order  # sorted episode -> its row in the arrays given
        self.positions = positions[order]
        self.start_seconds = start_seconds[order]
        self.end_seconds = end_seconds[order]
        self._start_keys = pairs.event_keys(self.positions, self.start_seconds)

    def _next_episode(self, positions: IntArray, seconds: IntArray) -> IntArray:
        """Per query: index of the first episode sorting after (partner, time) in (partner, start) order."""
        following: IntArray = np.searchsorted(self._start_keys, pairs.event_keys(positions, seconds), side="right")
        return following

    def inside(self, positions: IntArray, seconds: IntArray) -> BoolArray:
        """(m,) whether each partner is inside one of its episodes [start, end) at `seconds`."""
        if self.positions.size == 0 or positions.size == 0:
            return np.zeros(positions.shape, dtype=bool)
        current = self._next_episode(positions, seconds) - 1
        safe = np.maximum(current, 0)
        return (current >= 0) & (self.positions[safe] == positions) & (seconds < self.end_seconds[safe])

    def next_start(self, positions: IntArray, seconds: IntArray) -> tuple[IntArray, FloatArray]:
        """(m,) row (in the arrays given) of the partner's next episode, -1 when none follows, and
        (m,) days until it starts (inf when none follows)."""
        if self.positions.size == 0 or positions.size == 0:
            return np.full(positions.shape, -1, dtype=np.int64), np.full(positions.shape, np.inf)
        following = self._next_episode(positions, seconds)
        safe = np.minimum(following, self.positions.size - 1)
        has_next = (following < self.positions.size) & (self.positions[safe] == positions)
        days = np.where(has_next, (self.start_seconds[safe] - seconds) / pairs.SECONDS_PER_DAY, np.inf)
        return np.where(has_next, self.rows[safe], -1), days

    def days_to_next_start(self, positions: IntArray, seconds: IntArray) -> FloatArray:
        """(m,) days until the partner's next episode starts (inf when none follows)."""
        return self.next_start(positions, seconds)[1]


def pair_keys(positions_a: IntArray, positions_b: IntArray, partner_count: int) -> IntArray:
    """(m,) order-free key `min * n + max` of each (a, b) partner pair, n = `partner_count`."""
    return np.minimum(positions_a, positions_b) * partner_count + np.maximum(positions_a, positions_b)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The latent state behind one synthetic ecosystem (n partners, P products, R regions).

    partner_ids: (n,) str; row i of every per-partner array belongs to partner_ids[i].
    product_skill: (n, P) float32 logits, columns as schema.PRODUCTS; mostly in -1.3..0, a few
        specialities 0.3..2.6, plus a partner-wide quality shift.
    region_skill: (n, R) float32, columns as schema.REGIONS; >= 0 where the partner operates
        (home highest), NON_OPERATING_REGION_SKILL elsewhere.
    certification_levels: (n, P) int8 in 0..3, the levels in the partners table.
    true_capacity: (n,) float64 deals per schema.LOAD_WINDOW, > 0.
    size_sweet_spot: (n,) float64 USD, the amount the partner wins best at.
    affinity: one row per known pair (PARTNER_A < PARTNER_B, AFFINITY in [-1, 1]); 0 for others.
    disengagement: episodes (schema.PARTNER_ID, EPISODE_START, EPISODE_END), [start, end) and
        non-overlapping per partner, with the drift that preceded each (SENTIMENT_ONSET_DAYS,
        ENGAGEMENT_ONSET_DAYS, DRIFT_STRENGTH; absent in directories written before the drift had them).
    outcome_probability: (rows,) float64 in (0, 1): the true win probability of each outcomes row.
    message_sentiment: (messages,) float64 in [-1, 1]: the latent sentiment of each message.
    team_coefficients: the true model of team deals (saved only when they differ from the defaults,
        so that truth directories without team deals stay as they were).
    """

    partner_ids: StrArray
    product_skill: npt.NDArray[np.float32]
    region_skill: npt.NDArray[np.float32]
    certification_levels: npt.NDArray[np.int8]
    true_capacity: FloatArray
    size_sweet_spot: FloatArray
    affinity: pd.DataFrame
    disengagement: pd.DataFrame
    coefficients: TruthCoefficients
    outcome_probability: FloatArray
    message_sentiment: FloatArray
    team_coefficients: TeamCoefficients = TeamCoefficients()

    @cached_property
    def partner_index(self) -> pd.Index:
        """partner_ids as an index (position lookups)."""
        return pd.Index(self.partner_ids)

    @cached_property
    def episodes(self) -> EpisodeIndex:
        """The disengagement episodes, indexed by partner position."""
        return EpisodeIndex(
            self.positions(self.disengagement[schema.PARTNER_ID]),
            pairs.to_seconds(self.disengagement[EPISODE_START]),
            pairs.to_seconds(self.disengagement[EPISODE_END]),
        )

    @cached_property
    def _affinity_keys(self) -> tuple[IntArray, FloatArray]:
        """Sorted `pair_keys` of the known pairs and their affinities."""
        keys = pair_keys(
            self.positions(self.affinity[PARTNER_A]), self.positions(self.affinity[PARTNER_B]), self.partner_ids.size
        )
        order = np.argsort(keys)
        return keys[order], self.affinity[AFFINITY].to_numpy(dtype=np.float64)[order]

    def positions(self, partner_ids: PartnerIds) -> IntArray:
        """(m,) row positions of `partner_ids` in the per-partner arrays; FeatureError for unknown ids."""
        found: IntArray = pairs.positions(partner_ids, self.partner_index, schema.PARTNER_ID)
        return found

    def in_disengagement(self, partner_positions: IntArray, created_at: npt.NDArray[np.datetime64]) -> BoolArray:
        """(m,) whether each partner is inside a disengagement episode at `created_at`."""
        return self.episodes.inside(partner_positions, pairs.to_seconds(created_at))

    def pair_affinity(self, positions_a: IntArray, positions_b: IntArray) -> FloatArray:
        """(m,) affinity in [-1, 1] of each (a, b) partner pair, symmetric; 0 for unknown pairs."""
        keys, values = self._affinity_keys
        query = pair_keys(positions_a, positions_b, self.partner_ids.size)
        if keys.size == 0:
            return np.zeros(query.shape)
        slot = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        return np.where(keys[slot] == query, values[slot], 0.0)

    def save(self, directory: str | Path) -> Path:
        """Write to `directory`/truth (arrays.npz, affinity/disengagement parquet, coefficients.json)."""
        root = Path(directory) / TRUTH_DIRNAME
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / "arrays.npz", **{name: getattr(self, name) for name in _ARRAY_FIELDS})
        self.affinity.to_parquet(root / "affinity.parquet", index=False)
        self.disengagement.to_parquet(root / "disengagement.parquet", index=False)
        (root / "coefficients.json").write_text(json.dumps(asdict(self.coefficients), indent=2) + "\n")
        if self.team_coefficients != TeamCoefficients():
            (root / TEAM_COEFFICIENTS_FILE).write_text(json.dumps(asdict(self.team_coefficients), indent=2) + "\n")
        return root

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Read what `save(directory)` wrote."""
        root = Path(directory) / TRUTH_DIRNAME
        with np.load(root / "arrays.npz", allow_pickle=False) as arrays:
            stored: dict[str, Any] = {name: arrays[name] for name in _ARRAY_FIELDS}
        return cls(
            **stored,
            affinity=pd.read_parquet(root / "affinity.parquet"),
            disengagement=pd.read_parquet(root / "disengagement.parquet"),
            coefficients=TruthCoefficients(**json.loads((root / "coefficients.json").read_text())),
            team_coefficients=TeamCoefficients(**json.loads(team_file.read_text()))
            if (team_file := root / TEAM_COEFFICIENTS_FILE).is_file()
            else TeamCoefficients(),
        )
