"""The monitoring workflow file: a pydantic model, validated with one-line errors naming the bad key.

A monitoring workflow (``geoseg monitor WORKFLOW.yaml``) differs from a batch workflow (``geoseg
workflow``): instead of a fixed list of scenes it names where scenes *arrive* (a folder glob with the
date in the file name, or a local STAC ItemCollection / catalog), an area of interest, and how to
compare dates. Relative paths are relative to the workflow file's folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geoseg.config import ClusterConfig, RunConfig, read_yaml_mapping
from geoseg.errors import GeosegError


class MonitorWorkflowError(GeosegError):
    """A monitoring workflow file is missing or invalid (exit status 2)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AOIConfig(_Strict):
    """Area of interest: a vector file (GeoJSON/GeoPackage; all its features are unioned) or a bbox + CRS."""

    file: Path | None = Field(None, description="GeoJSON or GeoPackage of the area (features are unioned)")
    layer: str | None = Field(None, description="layer of a multi-layer GeoPackage")
    bbox: tuple[float, float, float, float] | None = Field(None, description="xmin, ymin, xmax, ymax")
    crs: str | None = Field(None, description="CRS of bbox, e.g. EPSG:26914 (default EPSG:4326)")

    @model_validator(mode="after")
    def _one_source(self) -> AOIConfig:
        if (self.file is None) == (self.bbox is None):
            raise ValueError("give either file or bbox")
        if self.bbox is not None and not (self.bbox[0] < self.bbox[2] and self.bbox[1] < self.bbox[3]):
            raise ValueError("bbox must be xmin, ymin, xmax, ymax with xmin < xmax and ymin < ymax")
        return self


class ScenesConfig(_Strict):
    """Where scenes come from: a folder glob with a date in each file name, or a local STAC file."""

    folder: Path | None = Field(None, description="folder searched with glob")
    glob: str = Field("*.tif", description="file-name pattern inside folder (recursive with **)")
    date_regex: str = Field(
        r"(\d{8})", description="regex whose first group (last match in the file name) is the date"
    )
    date_format: str = Field("%Y%m%d", description="strptime format of that group")
    stac: Path | None = Field(
        None, description="local STAC ItemCollection or static catalog JSON (items' datetime is the date)"
    )
    asset: str | None = Field(None, description="asset key of the scene in each STAC item")

    @model_validator(mode="after")
    def _one_source(self) -> ScenesConfig:
        if (self.folder is None) == (self.stac is None):
            raise ValueError("give either folder (with glob) or stac (with asset)")
        if self.stac is not None and not self.asset:
            raise ValueError("stac needs asset (the key of the scene asset in each item)")
        try:
            rx = re.compile(self.date_regex)
        except re.error as exc:
            raise ValueError(f"date_regex is not a valid regular expression: {exc}") from None
        if rx.groups < 1:
            raise ValueError("date_regex needs one group holding the date")
        return self


class MasksConfig(_Strict):
    """Optional per-scene validity (e.g. cloud) masks; masked pixels are not computed nor compared.

    Either ``template``: a mask file per scene (``{stem}`` = scene file name without suffix, ``{date}`` =
    YYYYMMDD), or ``series``: one multi-band raster whose band descriptions are the dates (ISO
    timestamps), one band per date.
    """

    template: str | None = None
    series: Path | None = None
    invalid_values: list[float] = Field([1], description="mask values that mark a pixel invalid (cloud)")
    required: bool = Field(False, description="a scene without a mask fails (else it is used unmasked)")

    @model_validator(mode="after")
    def _one_source(self) -> MasksConfig:
        if (self.template is None) == (self.series is None):
            raise ValueError("give either template or series")
        return self


# RunConfig fields the monitor sets itself (the rest may be given under ``run:``)
_RUN_OWN = {
    "scene",
    "out",
    "model",
    "models",
    "date",
    "date_pattern",
    "overwrite",
    "progress",
    "cluster",
    "bands",
    "band_names",
}


class ChangeSettings(_Strict):
    """How dates are compared."""

    mmu_m2: float = Field(100.0, ge=0, description="minimum mapping unit of change regions in m²")
    grid: Literal["before", "after", "finer"] = "finer"
    against_first: bool = Field(False, description="also compare every date with the first valid date")


class MonitorWorkflow(_Strict):
    """A monitoring workflow (``geoseg monitor``)."""

    name: str = Field(..., min_length=1)
    out: Path
    aoi: AOIConfig
    scenes: ScenesConfig
    model: str = Field("baseline:landcover", description="checkpoint path or baseline:landcover")
    buildings_model: str | None = Field(
        None,
        description="also map buildings (a building checkpoint or baseline:buildings) from the same read: "
        "each change step then reports new, removed and changed buildings",
    )
    bands: list[str] | None = Field(
        None, description="band names of the scenes in order, e.g. red,green,blue,nir"
    )
    masks: MasksConfig | None = None
    min_clear_fraction: float = Field(
        0.05, ge=0, le=1, description="scenes with less of the AOI valid (clear) are skipped as cloudy"
    )
    change: ChangeSettings = ChangeSettings()
    history_landcover: bool = Field(
        False, description="also put every date's land-cover polygons in history.gpkg"
    )
    run: dict[str, Any] = Field(
        {}, description="geoseg run options of the per-date runs: tile, overlap, batch, block, resample, ..."
    )
    cluster: ClusterConfig = ClusterConfig()

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if v.startswith("baseline:") and v not in ("baseline:landcover",):
            raise ValueError(f"unknown baseline {v!r}; monitoring supports baseline:landcover")
        return v

    @field_validator("buildings_model")
    @classmethod
    def _buildings_model(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("baseline:") and v != "baseline:buildings":
            raise ValueError(f"unknown baseline {v!r}; buildings are mapped by baseline:buildings")
        return v

    @field_validator("run")
    @classmethod
    def _run_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        own = sorted(set(v) & _RUN_OWN)
        if own:
            raise ValueError(f"{own[0]} is set by the monitor, not under run")
        try:
            RunConfig(scene=Path("x.tif"), out=Path("x"), **v)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"]))
            raise ValueError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
        return v

    def run_config(self, scene: Path, out: Path, date) -> RunConfig:
        """The ``geoseg run`` configuration of one date's clip (both products from one read when
        buildings are mapped too)."""
        models = [Path(m) for m in self.models] if len(self.models) > 1 else []
        return RunConfig(
            scene=scene, out=out, model=Path(self.model), models=models, date=date, overwrite=True,
            progress=False, cluster=self.cluster, **self.run,
        )  # fmt: skip

    @property
    def models(self) -> list[str]:
        """The land-cover model, and the building model where there is one."""
        return [self.model, *([self.buildings_model] if self.buildings_model else [])]

    @property
    def is_baseline(self) -> bool:
        return all(m.startswith("baseline:") for m in self.models)

    def processing_hash(self) -> str:
        """Identity of everything that decides a date's land-cover map (not where outputs go)."""
        blob = self.model_dump(
            mode="json",
            include={"aoi", "model", "buildings_model", "bands", "masks", "min_clear_fraction", "run"},
        )
        if not self.buildings_model:  # the identity of workflows written before buildings were mapped
            blob.pop("buildings_model")
        import geoseg.inference.baseline
        from geoseg.models.meta import file_sha256

        # a baseline's identity is its rules' code (as in geoseg run)
        shas = [
            file_sha256(geoseg.inference.baseline.__file__ if m.startswith("baseline:") else m)
            for m in self.models
        ]
        blob["model_sha256"] = "+".join(shas)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def change_hash(self) -> str:
        return hashlib.sha256(
            json.dumps(self.change.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]


def _resolve(raw: dict[str, Any], base: Path) -> None:
    """Make the workflow's relative paths relative to its folder (in place)."""

    def fix(d: Any, key: str) -> None:
        if isinstance(d, dict) and isinstance(d.get(key), str):
            d[key] = str((base / d[key]).resolve())

    fix(raw, "out")
    fix(raw.get("aoi"), "file")
    fix(raw.get("scenes"), "folder")
    fix(raw.get("scenes"), "stac")
    fix(raw.get("masks"), "series")
    for key in ("model", "buildings_model"):
        if isinstance(raw.get(key), str) and not raw[key].startswith("baseline:"):
            raw[key] = str(base / raw[key])
    masks = raw.get("masks")
    if isinstance(masks, dict) and isinstance(masks.get("template"), str):
        masks["template"] = str(base / masks["template"])


def load_monitor_workflow(path: str | Path) -> MonitorWorkflow:
    """Parse and validate ``path``; raise ``MonitorWorkflowError`` with one line naming the bad key."""
    path = Path(path)
    raw = read_yaml_mapping(path, MonitorWorkflowError, "name, out, aoi and scenes")
    if isinstance(raw.get("bands"), str):
        raw["bands"] = [b.strip() for b in raw["bands"].split(",") if b.strip()]
    _resolve(raw, path.resolve().parent)
    try:
        wf = MonitorWorkflow.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(map(str, err["loc"])) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise MonitorWorkflowError(f"{path}: {loc}: {msg}") from None
    for key, expected in (("model", "landcover"), ("buildings_model", "buildings")):
        spec = getattr(wf, key)
        if spec is None or spec.startswith("baseline:"):
            continue
        if not Path(spec).is_file():
            raise MonitorWorkflowError(f"{path}: {key}: no such checkpoint {spec}")
        from geoseg.models.meta import read_meta

        try:
            task = read_meta(spec).task
        except GeosegError as exc:
            raise MonitorWorkflowError(f"{path}: {key}: {exc}") from None
        if task != expected:
            raise MonitorWorkflowError(f"{path}: {key}: {spec} is a {task} model, not a {expected} one")
    if wf.aoi.file is not None and not wf.aoi.file.is_file():
        raise MonitorWorkflowError(f"{path}: aoi.file: no such file {wf.aoi.file}")
    if wf.scenes.folder is not None and not wf.scenes.folder.is_dir():
        raise MonitorWorkflowError(f"{path}: scenes.folder: no such folder {wf.scenes.folder}")
    if wf.scenes.stac is not None and not wf.scenes.stac.is_file():
        raise MonitorWorkflowError(f"{path}: scenes.stac: no such file {wf.scenes.stac}")
    if wf.masks is not None and wf.masks.series is not None and not wf.masks.series.is_file():
        raise MonitorWorkflowError(f"{path}: masks.series: no such file {wf.masks.series}")
    return wf
