"""The ground truth: point lookups (episodes, affinities, positions) and its round trip through disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import pairs, schema
from features.synthetic import oracle_probability
from features.synthetic import truth as ground_truth
from tests.features.synthetic.conftest import Generated


def test_truth_round_trips_through_disk(smoke: Generated, tmp_path: Path) -> None:
    ecosystem, truth = smoke
    root = truth.save(tmp_path)
    assert root == tmp_path / "truth"
    loaded = ground_truth.GroundTruth.load(tmp_path)
    for name in ("partner_ids", "product_skill", "region_skill", "certification_levels", "outcome_probability"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(truth, name))
    pd.testing.assert_frame_equal(loaded.disengagement, truth.disengagement)
    assert loaded.coefficients == truth.coefficients
    np.testing.assert_array_equal(
        oracle_probability(loaded, ecosystem, ecosystem.deals, ecosystem.outcomes), truth.outcome_probability
    )


def test_episode_lookups_are_half_open_and_per_partner() -> None:
    # Partner 0 is disengaged in [1000, 2000) and [5000, 6000), partner 2 in [1500, 3000), partner 1 never.
    starts, ends = np.array([1500, 5000, 1000]), np.array([3000, 6000, 2000])
    episodes = ground_truth.EpisodeIndex(np.array([2, 0, 0]), starts, ends)
    positions = np.array([0, 0, 0, 0, 1, 2, 2, 0])
    seconds = np.array([999, 1000, 1999, 2000, 1500, 1500, 3000, 7000])
    np.testing.assert_array_equal(
        episodes.inside(positions, seconds), [False, True, True, False, False, True, False, False]
    )
    day = pairs.SECONDS_PER_DAY
    np.testing.assert_array_equal(
        episodes.days_to_next_start(positions, seconds),
        [1 / day, 4000 / day, 3001 / day, 3000 / day, np.inf, np.inf, np.inf, np.inf],
    )


def test_lookups_match_the_saved_tables(smoke: Generated) -> None:
    _, truth = smoke
    episode = truth.disengagement.iloc[0]
    start = episode[ground_truth.EPISODE_START]
    partner = truth.positions([episode[schema.PARTNER_ID]] * 3)
    times = np.array(
        [start - pd.Timedelta(seconds=1), start, episode[ground_truth.EPISODE_END]],
        dtype="datetime64[ns]",
    )
    np.testing.assert_array_equal(truth.in_disengagement(partner, times), [False, True, False])

    pair = truth.affinity.iloc[0]
    a, b = truth.positions([pair[ground_truth.PARTNER_A]]), truth.positions([pair[ground_truth.PARTNER_B]])
    assert truth.pair_affinity(a, b)[0] == truth.pair_affinity(b, a)[0] == pair[ground_truth.AFFINITY] != 0
    assert truth.pair_affinity(a, a)[0] == 0.0
    with pytest.raises(pairs.FeatureError, match="P999999") as unknown:
        truth.positions(["P000001", "P999999"])
    assert unknown.value.field == schema.PARTNER_ID
