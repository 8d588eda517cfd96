"""The model bundle: everything a service needs to route deals, in one directory.

    manifest.json        model name, encoder, feature list, vocabularies, history end
    win_model.joblib     the fitted WinModel (LightGBM booster + calibrator)
    partner_vectors.npy  (n, d) float32 profile embeddings, rows aligned with partners.parquet
    partners.parquet, deals.parquet, outcomes.parquet, engagement.parquet
                         the history that point-in-time features are computed from
    index/               FAISS index over the partner vectors (candidate retrieval)

It is logged to MLflow as one registered model version, so a version is self-contained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from features import io, schema
from features.index import PartnerIndex
from features.pairs import FeatureContext, build_feature_context
from training.win_model import WinModel

MANIFEST = "manifest.json"
WIN_MODEL = "win_model.joblib"
PARTNER_VECTORS = "partner_vectors.npy"
INDEX_DIR = "index"
HISTORY_TABLES = (schema.PARTNERS, schema.DEALS, schema.OUTCOMES, schema.ENGAGEMENT)


@dataclass(frozen=True)
class BundleManifest:
    model_name: str
    encoder: str  # `features.embed.make_encoder` name of the encoder that embedded the texts
    feature_names: tuple[str, ...]
    products: tuple[str, ...]
    regions: tuple[str, ...]
    history_end: str  # ISO time of the latest event in the history
    training_rows: int


@dataclass(frozen=True)
class ModelBundle:
    manifest: BundleManifest
    win_model: WinModel
    partner_vectors: np.ndarray
    index: PartnerIndex | None  # None when loaded without history
    history: dict[str, pd.DataFrame]  # table name -> frame; empty when loaded without history

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2))
        joblib.dump(self.win_model, directory / WIN_MODEL)
        np.save(directory / PARTNER_VECTORS, self.partner_vectors)
        if self.index is not None:
            self.index.save(directory / INDEX_DIR)
        for spec in HISTORY_TABLES:
            io.write_table(self.history[spec.name], directory / f"{spec.name}.parquet")
        return directory

    @classmethod
    def load(cls, directory: Path, with_history: bool = True) -> ModelBundle:
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"{directory} is not a model bundle: {MANIFEST} is missing")
        raw = json.loads(manifest_path.read_text())
        manifest = BundleManifest(
            **{**raw, **{key: tuple(raw[key]) for key in ("feature_names", "products", "regions")}}
        )
        history = (
            {spec.name: io.read_table(directory / f"{spec.name}.parquet", spec) for spec in HISTORY_TABLES}
            if with_history
            else {}
        )
        return cls(
            manifest=manifest,
            win_model=joblib.load(directory / WIN_MODEL),
            partner_vectors=np.load(directory / PARTNER_VECTORS),
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
