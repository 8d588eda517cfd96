"""A synthetic partner ecosystem with known ground truth.

- `generate`: `EcosystemConfig` and `generate_ecosystem(config)`, the five tables of
  `features.schema` drawn from latent truth, plus that truth.
- `truth`: `GroundTruth`, the latent state (skills, capacities, affinities, disengagement episodes,
  true probabilities), its point lookups and its save / load beside the tables.
- `oracle`: the true win model and `oracle_probability`, which scores any (deal, partner) slate.
"""

from features.synthetic.generate import EcosystemConfig, generate_ecosystem
from features.synthetic.oracle import (
    oracle_probability,
    recent_attempt_counts,
    team_deal_probability,
    true_team_deal_probability,
    true_team_probability,
    true_win_logit,
)
from features.synthetic.truth import (
    AFFINITY,
    EPISODE_END,
    EPISODE_START,
    PARTNER_A,
    PARTNER_B,
    GroundTruth,
    TeamCoefficients,
    TruthCoefficients,
)

__all__ = [
    "AFFINITY",
    "EPISODE_END",
    "EPISODE_START",
    "PARTNER_A",
    "PARTNER_B",
    "EcosystemConfig",
    "GroundTruth",
    "TeamCoefficients",
    "TruthCoefficients",
    "generate_ecosystem",
    "oracle_probability",
    "recent_attempt_counts",
    "team_deal_probability",
    "true_team_deal_probability",
    "true_team_probability",
    "true_win_logit",
]
