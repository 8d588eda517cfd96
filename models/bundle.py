"""The model bundle: everything a service needs to route deals, in one directory.

    manifest.json        format version, model name, encoder, feature list, vocabularies, history end
    win_booster.txt      LightGBM text model (`models.win`)
    win_calibrator.json  its calibrator and feature names
    partners.parquet, deals.parquet, outcomes.parquet, engagement.parquet
                         the history that point-in-time features are computed from
    index/               FAISS index over the partner profile vectors (rows aligned with partners)

It is logged to MLflow as one registered model version, so a version is self-contained. A loader
refuses a bundle whose `format_version` it does not know, naming both versions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import io, schema
from features.index import PartnerIndex
from features.pairs import FeatureContext, build_feature_context
from models.win import WinModel

FORMAT_VERSION = 2  # 1: joblib-pickled model and a separate partner_vectors.npy (refused: retrain)
MANIFEST = "manifest.json"
INDEX_DIR = "index"
HISTORY_TABLES = (schema.PARTNERS, schema.DEALS, schema.OUTCOMES, schema.ENGAGEMENT)


class BundleFormatError(ValueError):
    """A directory that is not a bundle this code can read."""


@dataclass(frozen=True)
class BundleManifest:
    model_name: str
    encoder: str  # `features.embed.make_encoder` name of the encoder that embedded the texts
    feature_names: tuple[str, ...]
    products: tuple[str, ...]
    regions: tuple[str, ...]
    history_end: str  # ISO time of the latest event in the history
    training_rows: int
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class ModelBundle:
    manifest: BundleManifest
    win_model: WinModel
    index: PartnerIndex | None  # None when loaded without history
    history: dict[str, pd.DataFrame]  # table name -> frame; empty when loaded without history

    @property
    def partner_vectors(self) -> np.ndarray:
        """(n, d) float32 profile embeddings, rows aligned with the partners table."""
        if self.index is None:
            raise ValueError("the bundle was loaded without its history and index")
        return self.index.vectors

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.win_model.save(directory)
        if self.index is not None:
            self.index.save(directory / INDEX_DIR)
        for spec in HISTORY_TABLES:
            io.write_table(self.history[spec.name], directory / f"{spec.name}.parquet")
        # Written last: its presence marks a complete bundle.
        (directory / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path, with_history: bool = True) -> ModelBundle:
        manifest = read_manifest(directory)
        history = (
            {spec.name: io.read_table(directory / f"{spec.name}.parquet", spec) for spec in HISTORY_TABLES}
            if with_history
            else {}
        )
        return cls(
            manifest=manifest,
            win_model=WinModel.load(directory),
            index=PartnerIndex.load(directory / INDEX_DIR) if with_history else None,
            history=history,
        )

    def feature_context(self) -> FeatureContext:
        return build_feature_context(
            self.history[schema.PARTNERS.name],
            self.history[schema.DEALS.name],
            self.history[schema.OUTCOMES.name],
            self.history[schema.ENGAGEMENT.name],
            self.partner_vectors,
            vocabulary=(self.manifest.products, self.manifest.regions),
        )


def read_manifest(directory: Path) -> BundleManifest:
    """The bundle's manifest. Raises BundleFormatError for a missing manifest or an unknown format."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleFormatError(f"{directory} is not a model bundle: {MANIFEST} is missing")
    raw = json.loads(manifest_path.read_text())
    found = raw.get("format_version", 1)
    if found != FORMAT_VERSION:
        raise BundleFormatError(
            f"{directory} holds bundle format {found}; this code reads format {FORMAT_VERSION}: "
            "retrain with `partnermatch train` to register a bundle in the current format"
        )
    return BundleManifest(**{**raw, **{key: tuple(raw[key]) for key in ("feature_names", "products", "regions")}})
