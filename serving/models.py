"""`GET /models`: the registered models a service loaded, each with its training window and the
drift last computed for it (`partnermatch drift` tags the version; read afresh on every call)."""

from __future__ import annotations

from models.drift import ALERT_PSI, DRIFT_PSI_MAX_TAG, WARN_PSI, status_of
from models.registry import CHAMPION, Paths, registered_version
from serving.reload import LoadedChampion
from serving.schemas import DriftStatus, ServedModel


def drift_status(tags: dict[str, str]) -> DriftStatus:
    """The drift status of a version's tags: unknown when drift was never computed for it."""
    raw = tags.get(DRIFT_PSI_MAX_TAG)
    psi_max = None if raw is None else float(raw)
    return DriftStatus(status=status_of(psi_max), psi_max=psi_max, warn=WARN_PSI, alert=ALERT_PSI)


def served_models(paths: Paths, champion: LoadedChampion) -> list[ServedModel]:
    """The win champion as served (more models append theirs). Raises RegistryError when the registry
    cannot be read."""
    loaded = champion.version
    now = registered_version(paths, loaded.name, loaded.version)
    return [
        ServedModel(
            name=loaded.name,
            version=loaded.version,
            alias=CHAMPION,
            encoder=champion.router.model_info.encoder,
            training_window=champion.training_window,
            drift=drift_status(dict(now.tags) if now is not None else {}),
        )
    ]
