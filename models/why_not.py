""" "Why not partner X?" for a routed deal: the constraint that removed X, or the features that
separate X from the partner ranked last in the top k (TreeSHAP difference).

Pure: the caller passes the candidates' constraint masks in routing order, their probabilities and
feature rows. Today `serving.routing.Router` applies region, certification, exclusion and capacity
constraints inside `route`; once its stage refactor lands, the constraint stage should hand its
masks here instead of the caller rebuilding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from features.pairs import FeatureError
from features.schema import PARTNER_ID
from models.win import WinModel


@dataclass(frozen=True)
class FeatureGap:
    feature: str
    gap: float  # log-odds contribution of the partner above minus the asked partner's (> 0: favours above)


@dataclass(frozen=True)
class WhyNot:
    partner_id: str
    in_top_k: bool
    rank: int | None  # 1-based merit rank among eligible candidates; None when a constraint removed it
    removed_by: str | None  # the first constraint (routing order) it fails
    compared_with: str | None  # the partner ranked last in the top k
    gaps: tuple[FeatureGap, ...]  # largest first


def why_not(
    partner_id: str,
    partner_ids: npt.NDArray[np.str_],
    constraints: Sequence[tuple[str, npt.NDArray[np.bool_]]],
    probability: npt.NDArray[np.float64],
    features: npt.NDArray[np.float32],
    win_model: WinModel,
    top_k: int = 10,
    gap_count: int = 3,
) -> WhyNot:
    """partner_ids (n,), constraint masks (n,) True = passes, in routing order, probability (n,),
    features (n, F) in `win_model.feature_names` order. FeatureError for an id not among them."""
    found = np.flatnonzero(partner_ids == partner_id)
    if found.size == 0:
        raise FeatureError(PARTNER_ID, f"{partner_id!r} is not among the deal's candidates")
    row = int(found[0])
    for name, passes in constraints:
        if not passes[row]:
            return WhyNot(partner_id, False, None, name, None, ())
    eligible = np.ones(partner_ids.size, dtype=bool)
    for _, passes in constraints:
        eligible &= passes
    order = np.flatnonzero(eligible)[np.argsort(-probability[eligible], kind="stable")]
    rank = int(np.flatnonzero(order == row)[0]) + 1
    if rank <= top_k:
        return WhyNot(partner_id, True, rank, None, None, ())
    above = int(order[top_k - 1])
    contributions = win_model.contributions(features[[above, row]])
    difference = contributions[0] - contributions[1]
    largest = np.argsort(-difference)[:gap_count]
    gaps = tuple(FeatureGap(win_model.feature_names[i], float(difference[i])) for i in largest if difference[i] > 0)
    return WhyNot(partner_id, False, rank, None, str(partner_ids[above]), gaps)
