"""The ideal-partner-profile stage of the service (no BentoML): prospects in, fits and white space out.

`IppScorer` wraps the registered `partnermatch-ipp` champion (`models.ipp`) and its encoder:
- `fit`: validates each prospect with `features.prospects.prospect_from_fields` (a problem raises
  `FeatureError("prospects.<index>.<field>", reason)`), embeds and scores them (`score_in_batches`);
- `white_space`: the cells with unmet demand, best first, each with the kept prospects (a list an
  API key kept with `keep: true`, see `serving.prospect_lists`) that would fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property

from features.embed import Encoder
from features.pairs import FeatureError
from features.prospects import Prospect, prospect_from_fields
from features.schema import PRODUCTS, REGIONS
from models.ipp import IppModel, ProspectScore, Reason, WhiteSpaceCell, score_in_batches
from models.registry import REGISTERED_IPP_MODEL, Paths, RegisteredVersion, local_bundle
from serving.ipp_schemas import (
    CellProspect,
    EvidenceOut,
    IppFitRequest,
    IppFitResponse,
    KeptList,
    KeptProspect,
    ProspectFit,
    ProspectIn,
    ProspectListInfo,
    ReasonOut,
    WhiteSpaceCellMap,
    WhiteSpaceCellOut,
    WhiteSpaceResponse,
)
from serving.schemas import ModelInfo

PROSPECTS_PER_CELL = 3  # kept prospects named per white-space cell
TRAIN_COMMAND = "partnermatch train-ipp"
MISSING_MODEL_REASON = (
    f"no {REGISTERED_IPP_MODEL} champion is registered: run `{TRAIN_COMMAND}`, then restart the service"
)
# What warms the FAISS group indexes up at load, so that the first request pays no index build.
_WARM_UP = ProspectIn(
    profile_text="managed firewall and network security services",
    products=[PRODUCTS[0]],
    regions=[REGIONS[0]],
    capacity=1,
)


def prospect_of(item: ProspectIn, index: int) -> Prospect:
    """The domain prospect of request item `index`; FeatureError naming `prospects.<index>.<field>`."""
    try:
        return prospect_from_fields(item.model_dump(), default_id=str(index))
    except ValueError as error:
        field, _, reason = str(error).partition(": ")
        raise FeatureError(f"prospects.{index}.{field}", reason) from error


def _optional(value: float) -> float | None:
    return None if value != value else value  # NaN (no current partners to rank against) -> null


def _fit(score: ProspectScore, cells: Mapping[WhiteSpaceCell, WhiteSpaceCellOut]) -> ProspectFit:
    """The answer for one score; `cells` holds the model's white-space cells, converted once."""
    return ProspectFit(
        prospect_id=score.prospect_id,
        fit_score=score.fit_score,
        percentile=_optional(score.percentile),
        expected_days_to_first_win=score.expected_days_to_first_win,
        first_win_observed_days=score.first_win_observed_days,
        nearest_top_performers=[
            EvidenceOut(partner_id=item.partner_id, similarity=item.similarity, win_rate=item.win_rate)
            for item in score.nearest_top_performers
        ],
        raises=[_reason(reason) for reason in score.raises],
        lowers=[_reason(reason) for reason in score.lowers],
        white_space=[cells[cell] for cell in score.white_space],
    )


def _reason(reason: Reason) -> ReasonOut:
    return ReasonOut(feature=reason.feature, contribution=reason.contribution, text=reason.text)


@dataclass(frozen=True)
class IppScorer:
    """The IPP model, the encoder of its profiles, and what answers name (`model_info`)."""

    model: IppModel
    encoder: Encoder
    model_info: ModelInfo

    @cached_property
    def cells_out(self) -> dict[WhiteSpaceCell, WhiteSpaceCellOut]:
        """The model's white-space cells as answered: constant per model, so converted once."""
        return {cell: WhiteSpaceCellOut(**asdict(cell)) for cell in self.model.white_space_cells}

    def fit(self, request: IppFitRequest) -> IppFitResponse:
        """Fit of every prospect, in request order; FeatureError for the first unusable one."""
        prospects = [prospect_of(item, index) for index, item in enumerate(request.prospects)]
        scores = score_in_batches(self.model, prospects, self.encoder)
        return IppFitResponse(
            model=self.model_info, prospects=[_fit(score, self.cells_out) for score in scores], kept=request.keep
        )

    def kept_list(self, request: IppFitRequest, response: IppFitResponse) -> KeptList:
        """What `fit` answered, as the prospect list to keep for the caller."""
        return KeptList(
            saved_at=datetime.now(UTC),
            model_version=self.model_info.version,
            prospects=[
                KeptProspect(
                    prospect=item, prospect_id=fit.prospect_id, fit_score=fit.fit_score, percentile=fit.percentile
                )
                for item, fit in zip(request.prospects, response.prospects, strict=True)
            ],
        )

    def white_space(self, kept: KeptList | None, per_cell: int = PROSPECTS_PER_CELL) -> WhiteSpaceResponse:
        """The cells with unmet demand, most unmet first, each with up to `per_cell` kept prospects
        that would fill it (best fit first)."""
        fillers: dict[tuple[str, str], list[CellProspect]] = {}
        for index, item in enumerate(kept.prospects if kept else []):
            for cell in self.model.white_space_for(prospect_of(item.prospect, index)):
                fillers.setdefault((cell.product, cell.region), []).append(
                    CellProspect(prospect_id=item.prospect_id, fit_score=item.fit_score, percentile=item.percentile)
                )
        cells = [
            WhiteSpaceCellMap(
                **asdict(cell),
                prospects=sorted(fillers.get((cell.product, cell.region), []), key=lambda p: -p.fit_score)[:per_cell],
            )
            for cell in self.model.white_space_cells
        ]
        listed = None
        if kept is not None:
            listed = ProspectListInfo(
                saved_at=kept.saved_at, prospects=len(kept.prospects), model_version=kept.model_version
            )
        return WhiteSpaceResponse(
            model=self.model_info, products=list(PRODUCTS), regions=list(REGIONS), cells=cells, prospect_list=listed
        )


def ipp_scorer_of(paths: Paths, version: RegisteredVersion, make_encoder: Callable[[str], Encoder]) -> IppScorer:
    """One registered IPP version with its encoder (`make_encoder(name)`), warmed up. ValueError when
    the version's files are no IPP model."""
    model = IppModel.load(local_bundle(paths, version))
    scorer = IppScorer(
        model=model,
        encoder=make_encoder(model.encoder),
        model_info=ModelInfo(name=version.name, version=version.version, encoder=model.encoder),
    )
    scorer.fit(IppFitRequest(prospects=[_WARM_UP]))
    return scorer
