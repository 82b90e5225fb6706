"""The two dates of a comparison: finished ``geoseg run`` folders, read through their run.json."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import rasterio
from odc.geo.geobox import GeoBox

from geoseg.change.errors import ChangeInputError
from geoseg.rundir import RUN_FILE


@dataclass(frozen=True)
class ClassDef:
    id: int
    name: str
    color: str


@dataclass(frozen=True)
class RunInfo:
    """What a comparison needs from one finished run folder."""

    folder: Path
    item: dict
    date: dt.date
    task: str  # landcover | buildings
    classes: tuple[ClassDef, ...]
    model_id: str  # checkpoint sha256 (or name of a model-free baseline)
    raster: Path  # landcover.tif (class ids) or buildings.tif (building ids)
    confidence: Path | None
    source: Path | None  # the scene, when it is still where run.json says
    gpkg: Path | None
    geobox: GeoBox

    @property
    def item_id(self) -> str:
        return str(self.item.get("id"))

    @property
    def building_class(self) -> int | None:
        return next((c.id for c in self.classes if c.name == "building"), None)


def _asset_path(folder: Path, item: dict, key: str) -> Path | None:
    asset = item.get("assets", {}).get(key)
    if not asset or not asset.get("href"):
        return None
    p = Path(asset["href"])
    return p if p.is_absolute() else (folder / p).resolve()


def _date(item: dict) -> dt.date | None:
    props = item.get("properties", {})
    value = props.get("geoseg:acquisition_date")
    if value is None and "geoseg:processed" not in props:  # older run.json: datetime was processing time
        return None
    value = value or props.get("datetime")
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def load_run(folder: Path) -> RunInfo:
    """Read and check one finished run folder; ``ChangeInputError`` (one line) if it cannot be compared."""
    folder = Path(folder)
    run_json = folder / RUN_FILE
    if not folder.is_dir():
        raise ChangeInputError(f"{folder}: not a run folder or scene")
    try:
        item = json.loads(run_json.read_text())
    except OSError:
        raise ChangeInputError(f"{folder}: incomplete run folder (no {RUN_FILE})") from None
    except ValueError as exc:
        raise ChangeInputError(f"{run_json}: not valid JSON ({exc})") from None
    props = item.get("properties", {})
    model = props.get("geoseg:model", {})
    meta = model.get("metadata", {}) or {}
    task = meta.get("task") or ("buildings" if "buildings" in item.get("assets", {}) else "landcover")
    key = "buildings" if task == "buildings" else "landcover"
    raster = _asset_path(folder, item, key)
    if raster is None or not raster.is_file():
        raise ChangeInputError(f"{folder}: incomplete run folder ({key} raster missing)")
    classes = tuple(
        ClassDef(int(c["id"]), str(c["name"]), str(c.get("color") or "#808080"))
        for c in meta.get("classes", [])
    )
    if not classes:
        raise ChangeInputError(f"{run_json}: records no classes of its model")
    date = _date(item)
    if date is None:
        raise ChangeInputError(
            f"{folder}: run has no acquisition date (rerun geoseg run with --date YYYY-MM-DD)"
        )
    source = _asset_path(folder, item, "source")
    confidence = _asset_path(folder, item, "confidence")
    gpkg = _asset_path(folder, item, "vectors")
    try:
        with rasterio.open(raster) as src:
            geobox = GeoBox.from_rio(src)
    except rasterio.errors.RasterioError as exc:
        raise ChangeInputError(f"{raster}: unreadable ({exc})") from None
    return RunInfo(
        folder=folder.resolve(),
        item=item,
        date=date,
        task=task,
        classes=classes,
        model_id=str(model.get("sha256") or model.get("path") or meta.get("name") or "unknown"),
        raster=raster,
        confidence=confidence if confidence is not None and confidence.is_file() else None,
        source=source if source is not None and source.is_file() else None,
        gpkg=gpkg if gpkg is not None and gpkg.is_file() else None,
        geobox=geobox,
    )


def check_comparable(before: RunInfo, after: RunInfo) -> None:
    """Refuse pairs of runs that do not share a model and its classes."""
    if before.task != after.task:
        raise ChangeInputError(
            f"{after.folder}: a {after.task} run cannot be compared with {before.folder} ({before.task})"
        )
    b = [(c.id, c.name) for c in before.classes]
    a = [(c.id, c.name) for c in after.classes]
    if b != a:
        raise ChangeInputError(
            f"{after.folder}: classes {[n for _, n in a]} differ from {before.folder}'s {[n for _, n in b]}"
        )
    if before.model_id != after.model_id:
        raise ChangeInputError(
            f"{after.folder}: made by a different model than {before.folder} "
            f"({after.model_id[:12]} vs {before.model_id[:12]})"
        )
