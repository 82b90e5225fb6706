"""The two dates of a comparison: finished ``geoseg run`` folders, read through their run.json."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import rasterio
from odc.geo.geobox import GeoBox

from geoseg.change.errors import ChangeInputError
from geoseg.io.classes import hex_to_rgb
from geoseg.io.raster import crs_of
from geoseg.io.staging import RUN_FILE


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


def products(item: dict) -> list[str]:
    """The tasks of a run record's products (``landcover``, ``buildings``): one, or two for a run of
    several models from one read."""
    model = item.get("properties", {}).get("geoseg:model", {})
    metas = [m.get("metadata") or {} for m in model.get("models", [])] or [model.get("metadata") or {}]
    tasks = [m["task"] for m in metas if m.get("task")]
    if not tasks:  # a model-free run folder: its raster asset says
        tasks = [k for k in ("landcover", "buildings") if k in item.get("assets", {})][:1] or ["landcover"]
    return tasks


def _product_model(item: dict, task: str) -> tuple[dict, str]:
    """The model metadata and identity (SHA-256 or name) of the run's ``task`` product."""
    model = item.get("properties", {}).get("geoseg:model", {})
    for m in model.get("models", []):
        if (m.get("metadata") or {}).get("task") == task:
            return m.get("metadata") or {}, str(m.get("sha256") or m.get("path") or "unknown")
    meta = model.get("metadata", {}) or {}
    return meta, str(model.get("sha256") or model.get("path") or meta.get("name") or "unknown")


def load_run(folder: Path, task: str | None = None) -> RunInfo:
    """Read and check one finished run folder; ``ChangeInputError`` (one line) if it cannot be compared.

    ``task``: which product of a run of several models (default: land cover where there is one)."""
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
    tasks = products(item)
    if task is None:
        task = "landcover" if "landcover" in tasks else tasks[0]
    elif task not in tasks:
        raise ChangeInputError(f"{folder}: has no {task} product (it has {', '.join(tasks)})")
    meta, model_id = _product_model(item, task)
    key = "buildings" if task == "buildings" else "landcover"
    raster = _asset_path(folder, item, key)
    if raster is None or not raster.is_file():
        raise ChangeInputError(f"{folder}: incomplete run folder ({key} raster missing)")
    classes = tuple(
        ClassDef(int(c["id"]), str(c["name"]), str(c.get("color") or "#808080"))
        for c in meta.get("classes", [])
    )
    if not classes:  # e.g. a model-free run: the classes of its raster's STAC classification extension
        classes = tuple(
            ClassDef(int(c["value"]), str(c.get("title") or c["name"]), f"#{c.get('color_hint') or '808080'}")
            for c in item.get("assets", {}).get(key, {}).get("classification:classes", [])
        )
    if not classes:
        raise ChangeInputError(f"{run_json}: records no classes of its model")
    date = _date(item)
    if date is None:
        raise ChangeInputError(
            f"{folder}: run has no acquisition date (rerun geoseg run with --date YYYY-MM-DD)"
        )
    source = _asset_path(folder, item, "source")
    # a run of several models keeps the building probabilities beside land cover's under another name
    conf_key = "buildings_confidence" if task == "buildings" and len(tasks) > 1 else "confidence"
    confidence = _asset_path(folder, item, conf_key)
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
        model_id=model_id,
        raster=raster,
        confidence=confidence if confidence is not None and confidence.is_file() else None,
        source=source if source is not None and source.is_file() else None,
        gpkg=gpkg if gpkg is not None and gpkg.is_file() else None,
        geobox=geobox,
    )


def check_comparable(before: RunInfo, after: RunInfo, class_map: dict[str, str] | None = None) -> None:
    """Refuse pairs of runs that do not share a model and its classes, unless ``class_map`` says how
    AFTER's classes (by name) correspond to BEFORE's (``after_to_before``)."""
    if before.task != after.task:
        raise ChangeInputError(
            f"{after.folder}: a {after.task} run cannot be compared with {before.folder} ({before.task})"
        )
    if class_map is not None:
        after_to_before(before, after, class_map)
        return
    b = [(c.id, c.name) for c in before.classes]
    a = [(c.id, c.name) for c in after.classes]
    if b != a:
        raise ChangeInputError(
            f"{after.folder}: classes {[n for _, n in a]} differ from {before.folder}'s {[n for _, n in b]}; "
            "map them with --class-map AFTER=BEFORE,..."
        )
    if before.model_id != after.model_id:
        raise ChangeInputError(
            f"{after.folder}: made by a different model than {before.folder} "
            f"({after.model_id[:12]} vs {before.model_id[:12]}); compare them with --class-map"
        )


def after_to_before(before: RunInfo, after: RunInfo, class_map: dict[str, str]) -> dict[int, int]:
    """AFTER class id -> BEFORE class id: through ``class_map`` (names, case-insensitive), else the class
    of the same name. Raises ``ChangeInputError`` naming what does not map."""
    by_name = {c.name.lower(): c.id for c in before.classes}
    names = {k.strip().lower(): v.strip().lower() for k, v in class_map.items()}
    after_names = {c.name.lower() for c in after.classes}
    unknown = sorted(set(names) - after_names)
    if unknown:
        raise ChangeInputError(f"{after.folder}: --class-map names classes it does not have: {unknown}")
    out, missing = {}, []
    for c in after.classes:
        target = names.get(c.name.lower(), c.name.lower())
        if target not in by_name:
            missing.append(f"{c.name}->{target}" if c.name.lower() in names else c.name)
            continue
        out[c.id] = by_name[target]
    if missing:
        raise ChangeInputError(
            f"{after.folder}: classes {missing} have no class of {before.folder} "
            f"({[c.name for c in before.classes]}); map them with --class-map AFTER=BEFORE,..."
        )
    return out


def write_run_folder(
    out: Path,
    *,
    array,
    geobox: GeoBox,
    classes: list[ClassDef],
    date: dt.date | None,
    model_id: str,
    task: str = "landcover",
    source: Path | None = None,
    buildings=None,
    confidence=None,
) -> Path:
    """A finished run folder made from arrays already on the scene grid, in ``geoseg run``'s conventions
    (for model-free classifications and tests): ``landcover.tif`` (class ids; ``task="buildings"``:
    ``buildings.tif`` of building ids + the ``buildings`` layer from ``buildings``, a GeoDataFrame with
    ``id``), optional ``confidence.tif`` (uint8), and a run.json STAC Item with the acquisition date."""
    import datetime as _dt

    from geoseg.io.staging import staging_dir
    from geoseg.outputs.classmeta import add_class_extensions, write_category_sidecar
    from geoseg.outputs.cog import BlockCOGWriter
    from geoseg.outputs.gpkg import write_layer
    from geoseg.outputs.stac import COG_MEDIA, GPKG_MEDIA, build_run_item, write_item

    h, w = int(geobox.shape.y), int(geobox.shape.x)
    crs = crs_of(geobox).to_wkt()
    now = _dt.datetime.now(_dt.timezone.utc)
    with staging_dir(Path(out)) as stage:
        name = "buildings.tif" if task == "buildings" else "landcover.tif"
        with BlockCOGWriter(
            stage / name,
            crs=crs,
            transform=geobox.affine,
            width=w,
            height=h,
            dtype="uint32" if task == "buildings" else "uint8",
            nodata=0,
            colormap=None if task == "buildings" else {c.id: hex_to_rgb(c.color) for c in classes},
            class_names=None if task == "buildings" else {c.id: c.name for c in classes},
            overview_resampling="nearest",
        ) as wr:
            wr.write(0, 0, array)
        assets = {task: (f"./{name}", COG_MEDIA, ["data"], name)}
        if task != "buildings":
            write_category_sidecar(stage / name, [(c.id, c.name, c.color) for c in classes])
        if buildings is not None:
            write_layer(buildings.to_crs(crs), stage / "geoseg.gpkg", "buildings")
            assets["vectors"] = ("./geoseg.gpkg", GPKG_MEDIA, ["data"], "Building footprints")
        if confidence is not None:
            with BlockCOGWriter(
                stage / "confidence.tif", crs=crs, transform=geobox.affine, width=w, height=h, nodata=None
            ) as wr:
                wr.write(0, 0, confidence)
            assets["confidence"] = ("./confidence.tif", COG_MEDIA, ["data"], "confidence")
        item = build_run_item(
            item_id=f"{Path(source or out).stem}-{date or 'undated'}-{task}",
            scene_path=source or stage / name,
            scene_crs=crs,
            scene_bounds=tuple(geobox.extent.boundingbox),
            scene_shape=(h, w),
            scene_transform=geobox.affine,
            assets=assets,
            parameters={},
            model={
                "path": model_id,
                "sha256": model_id,
                "metadata": {"task": task, "classes": [c.__dict__ for c in classes]},
            },
            timing={},
            started=now,
            finished=now,
            out_dir=Path(out).resolve(),
            acquired=date,
        )
        if task != "buildings":
            add_class_extensions(item, task, [(c.id, c.name, c.color) for c in classes], "uint8", 0)
        write_item(item, stage / RUN_FILE)
    return Path(out)
