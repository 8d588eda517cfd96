"""The MILP seed of team assembly puts every required partner in the team, even a weak one."""

from __future__ import annotations

import numpy as np

from models.team import TeamInstance, TeamLimits, apply_limits, milp_seed


def test_milp_seed_assigns_a_weak_required_partner_a_requirement() -> None:
    # P002 is the weakest candidate on every requirement; without the covering row the seed would
    # mark it a member (y = 1) and still give every requirement to the strong P000.
    fit = np.array([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    instance = TeamInstance(
        products=("firewall", "storage"),
        partner_ids=np.array(["P000", "P001", "P002"]),
        fit=fit,
        load_ratio=np.zeros(3),
        joint=np.zeros((3, 3, 2)),
    )
    limits = TeamLimits(max_members=2, required_partner_ids=("P002",))
    limited, required = apply_limits(instance, limits)
    seed = milp_seed(limited, limits, required)
    assert 2 in seed.tolist()
    assert 0 in seed.tolist()  # the other requirement still goes to the best candidate
