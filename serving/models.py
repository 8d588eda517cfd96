"""`GET /models` and `POST /admin/reload` bodies: the registered models a service loaded, each with its
training window and the drift last computed for it (`partnermatch drift` tags the version; read
afresh on every call), and what a reload swapped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.drift import ALERT_PSI, DRIFT_PSI_MAX_TAG, WARN_PSI, status_of
from models.registry import Paths, registered_version
from serving.reload import Loaded, same_version
from serving.schemas import DriftStatus, ModelChange, ModelStatus


def drift_status(tags: dict[str, str]) -> DriftStatus:
    """The drift status of a version's tags: unknown when drift was never computed for it."""
    raw = tags.get(DRIFT_PSI_MAX_TAG)
    psi_max = None if raw is None else float(raw)
    return DriftStatus(status=status_of(psi_max), psi_max=psi_max, warn=WARN_PSI, alert=ALERT_PSI)


def model_statuses(paths: Paths, served: Sequence[Loaded[Any]]) -> list[ModelStatus]:
    """One status per loaded model, in `served` order, the version's tags read now. Raises
    RegistryError when the registry cannot be read."""
    statuses = []
    for model in served:
        now = registered_version(paths, model.version.name, model.version.version)
        statuses.append(
            ModelStatus(
                name=model.version.name,
                version=model.version.version,
                alias=model.alias,
                encoder=model.encoder,
                training_window=model.training_window,
                drift=drift_status(dict(now.tags) if now is not None else {}),
            )
        )
    return statuses


def model_changes(
    before: Mapping[tuple[str, str], Loaded[Any] | None], after: Mapping[tuple[str, str], Loaded[Any] | None]
) -> list[ModelChange]:
    """The slots ((model name, alias) -> what is loaded, None: nothing) whose version differs between
    `before` and `after`, in `after`'s order (then slots only `before` had)."""
    changes = []
    for slot in [*after, *(slot for slot in before if slot not in after)]:
        old, new = before.get(slot), after.get(slot)
        if old is not None and new is not None and same_version(old.version, new.version):
            continue
        if old is None and new is None:
            continue
        changes.append(
            ModelChange(
                name=slot[0],
                alias=slot[1],
                previous_version=None if old is None else old.version.version,
                version=None if new is None else new.version.version,
            )
        )
    return changes
