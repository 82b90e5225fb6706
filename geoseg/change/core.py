"""``geoseg change``: land-cover transitions and building change between two dates, block by block.

Two passes over blocks of the common grid (memory is bounded by the block size, not the scene):
  1. a Dask graph of block tasks (``geoseg.change.blocks``; an in-process worker by default, or the
     workers of ``--scheduler``): both dates' classes (nearest) and validity (nodata, masks) on the grid
     -> transition code per pixel (0 = no change / not compared) and the block's polygons; the client
     writes the codes to a hidden tiled GeoTIFF and merges the polygons across seams as ``geoseg run`` does.
  2. regions smaller than the minimum mapping unit (final, seam-merged polygons: the 4-connected
     pixels of one transition) are burnt back to 0 block by block while ``change.tif`` is written and
     the transition areas are counted, so the raster, the polygons and the table agree.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import rasterio
import shapely
from rasterio.features import rasterize

from geoseg.change.blocks import GDAL_CACHE_MB, CompareSpec, compared_blocks
from geoseg.change.buildings import match_buildings
from geoseg.change.config import ChangeConfig
from geoseg.change.errors import ChangeInputError
from geoseg.change.grid import Aligned, common_grid, pixel_size_m
from geoseg.change.runs import RunInfo, after_to_before, check_comparable, load_run, products
from geoseg.errors import OutputExistsError
from geoseg.io.classes import hex_to_rgb
from geoseg.io.raster import crs_of, window_to_rio
from geoseg.io.staging import staging_dir
from geoseg.outputs.classmeta import add_class_extensions, write_category_sidecar
from geoseg.outputs.cog import BlockCOGWriter
from geoseg.outputs.gpkg import write_layer, write_layer_styles
from geoseg.outputs.landcover import POLYGONS_PER_WRITE  # polygons per GeoPackage append, as in run
from geoseg.outputs.stac import COG_MEDIA, GPKG_MEDIA, _jsonable, software_versions, write_item
from geoseg.outputs.styles import categorized_polygon_qml, table_qml
from geoseg.outputs.vectorize import SeamMerger, polygons_to_frame
from geoseg.run.cluster import ClusterStart
from geoseg.run.locking import output_lock
from tiles import Window, block_windows

CHANGE_TIF = "change.tif"
CHANGE_GPKG = "change.gpkg"
CHANGE_JSON = "change.json"
TRANSITIONS_CSV = "transitions.csv"
MISREG_MAX_PX = 1024  # side of the central window used for the misregistration estimate


@dataclass
class ChangeSummary:
    out: Path
    skipped: bool
    overlap_m2: float = 0.0  # where the two footprints overlap
    compared_m2: float = 0.0  # of that, valid on both dates
    changed_m2: float = 0.0  # changed after the noise controls
    regions: int = 0  # landcover_change polygons
    grid: str = ""  # whose grid: before | after
    misregistration_m: float | None = None
    buildings: dict[str, int] = field(default_factory=dict)  # new / removed / changed counts
    seconds: float = 0.0
    runs: tuple[Path, Path] | None = None  # the run folders compared


def _fingerprint(cfg: ChangeConfig, before: RunInfo, after: RunInfo) -> str:
    def ident(p: Path | None) -> list | None:
        if p is None:
            return None
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]

    blob = {
        "before": [before.item.get("properties", {}).get("geoseg:fingerprint"), ident(before.raster)],
        "after": [after.item.get("properties", {}).get("geoseg:fingerprint"), ident(after.raster)],
        "masks": [ident(cfg.before_mask), ident(cfg.after_mask)],
        "params": cfg.model_dump(
            mode="json", include={"grid", "mmu_m2", "min_confidence", "block", "class_map"}
        ),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _check_out(out: Path, fp: str, overwrite: bool) -> bool:
    """True when ``out`` already holds this comparison."""
    if not out.exists():
        return False
    try:
        done = json.loads((out / CHANGE_JSON).read_text())["properties"]["geoseg:fingerprint"] == fp
    except (OSError, ValueError, KeyError, TypeError):
        done = False
    if done and not overwrite:
        return True
    if not overwrite:
        raise OutputExistsError(
            f"{out}: output folder already holds other files; use --overwrite to replace it"
        )
    return False


def _run_scene_first(path: Path, cfg: ChangeConfig, notify) -> Path:
    """A scene given as BEFORE/AFTER: run it (same model and settings for both) into ``<out>.runs/``."""
    from geoseg.config import DEFAULT_LANDCOVER_MODEL, RunConfig
    from geoseg.run.job import run_scene

    out = cfg.out.parent / f"{cfg.out.name}.runs" / path.stem
    run_cfg = RunConfig(
        scene=path,
        out=out,
        model=cfg.model or DEFAULT_LANDCOVER_MODEL,
        bands=cfg.bands,
        resample=cfg.resample,
        progress=cfg.progress,
        confidence=cfg.min_confidence is not None,
    )
    run_scene(run_cfg, notify=notify)
    return out


def _precheck_scenes(cfg: ChangeConfig) -> None:
    """Before running scenes: they must be rasters with a date and overlap each other."""
    from geoseg.io.dates import acquisition_date
    from geoseg.io.raster import open_scene

    scenes = {}
    for p in (cfg.before, cfg.after):
        if p.is_file():
            scene = open_scene(p)
            if acquisition_date(p)[0] is None:
                raise ChangeInputError(f"{p}: no acquisition date in its metadata or file name")
            scenes[p] = scene
    if len(scenes) == 2:
        common_grid(
            scenes[cfg.before].geobox, scenes[cfg.after].geobox, "finer", (str(cfg.before), str(cfg.after))
        )


def _resolve_inputs(cfg: ChangeConfig, notify) -> tuple[RunInfo, RunInfo]:
    for p in (cfg.before, cfg.after):
        if not p.exists():
            raise ChangeInputError(f"{p}: no such run folder or scene")
    for mask in (cfg.before_mask, cfg.after_mask):
        if mask is not None and not mask.is_file():
            raise ChangeInputError(f"{mask}: no such mask raster")
    _precheck_scenes(cfg)
    # run folders first: a bad folder is reported before any scene is run
    runs: dict[str, RunInfo] = {}
    for key in ("before", "after"):
        p = getattr(cfg, key)
        if p.is_dir():
            runs[key] = load_run(p)
    for key in ("before", "after"):
        p = getattr(cfg, key)
        if key not in runs:
            runs[key] = load_run(_run_scene_first(p, cfg, notify))
    return runs["before"], runs["after"]


def run_change(cfg: ChangeConfig, notify=print) -> ChangeSummary:
    """Compare two dates; every check happens before ``cfg.out`` is created. One process at a time writes
    ``cfg.out`` (``geoseg.run.locking``: a second caller gets ``OutputLockedError``)."""
    with output_lock(cfg.out, wait=False, notify=notify):
        return _run_change(cfg, notify)


def _run_change(cfg: ChangeConfig, notify) -> ChangeSummary:
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    before, after = _resolve_inputs(cfg, notify)
    check_comparable(before, after, cfg.class_map)
    if before.date > after.date:
        notify(f"note: BEFORE ({before.date}) is later than AFTER ({after.date}); compared as given")
    if cfg.min_confidence is not None:
        for r in (before, after):
            if r.confidence is None:
                raise ChangeInputError(
                    f"{r.folder}: --min-confidence needs a confidence raster (geoseg run --confidence)"
                )
    masks = [
        (path, mask_band(path, run.date))
        for path, run in ((cfg.before_mask, before), (cfg.after_mask, after))
        if path is not None
    ]
    target, overlap_m2, which = common_grid(
        before.geobox, after.geobox, cfg.grid, (str(before.folder), str(after.folder))
    )
    fp = _fingerprint(cfg, before, after)
    if _check_out(cfg.out, fp, cfg.overwrite):
        notify(f"{cfg.out}: already complete for these inputs; nothing to do (--overwrite to redo)")
        return ChangeSummary(out=cfg.out, skipped=True, runs=(before.folder, after.folder))
    h, w = int(target.shape.y), int(target.shape.x)
    px_m = pixel_size_m(target)
    notify(
        f"grid: {which}'s, {w} x {h} pixels of {px_m:.3g} m ({crs_of(target).to_epsg() or 'custom CRS'}); "
        f"footprints overlap {overlap_m2:,.0f} m²"
    )
    classes = before.classes
    n = len(classes)
    idx_of = np.zeros(256, np.int32)  # class id -> 1-based index (0: none)
    for i, c in enumerate(classes):
        idx_of[c.id] = i + 1
    code_dtype = "uint8" if n * n + 1 <= 255 else "uint16"
    transitions = {1 + i * n + j: (classes[i], classes[j]) for i in range(n) for j in range(n) if i != j}
    names = {code: f"{a.name} → {b.name}" for code, (a, b) in transitions.items()}
    colors = {code: _mix(hex_to_rgb(b.color), hex_to_rgb(a.color)) for code, (a, b) in transitions.items()}
    crs_wkt = crs_of(target).to_wkt()
    blocks = block_windows(h, w, cfg.block)
    pixel_area = px_m**2
    min_conf = None if cfg.min_confidence is None else cfg.min_confidence * 255

    after_idx = idx_of  # AFTER's class ids -> BEFORE's class index (the same ids without a class map)
    if cfg.class_map is not None:
        after_idx = np.zeros(256, np.int32)
        for a_id, b_id in after_to_before(before, after, cfg.class_map).items():
            after_idx[a_id] = idx_of[b_id]
    spec = CompareSpec(
        target, before, after, idx_of, after_idx, tuple(masks), min_conf, n, code_dtype,
        cfg.mmu_m2 / pixel_area,
    )  # fmt: skip

    timings: dict[str, float] = {}
    # GDAL's block cache (default 5 % of RAM) would otherwise grow with the scene through the warped reads
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), staging_dir(cfg.out) as stage:
        t = time.perf_counter()
        tmp = stage / ".change-pass1.tif"
        merger = SeamMerger(h, w)
        small: list = []  # seam-merged regions below the MMU (burnt to 0 in pass 2)
        kept: list = []  # final regions not written yet
        gpkg = stage / CHANGE_GPKG
        n_written = 0

        def write_kept(force: bool = False) -> None:
            """Append the held polygons to ``landcover_change`` (thousands per GeoPackage transaction)."""
            nonlocal n_written, kept
            held = sum(len(f) for f in kept)
            if held < POLYGONS_PER_WRITE and not (force and (held or n_written == 0)):
                return
            frame = (
                pd.concat(kept, ignore_index=True)
                if kept
                else polygons_to_frame([], names, crs_wkt, value_field="code")
            )
            write_layer(
                _change_frame(frame, transitions, before, after, crs_wkt),
                gpkg,
                "landcover_change",
                append=n_written > 0,
            )
            n_written += len(frame)
            kept = []

        def collect(polys) -> None:
            if not polys:
                return
            frame = polygons_to_frame(polys, names, crs_wkt, value_field="code")
            big = frame["area_m2"].to_numpy() >= cfg.mmu_m2 - 1e-9
            small.extend(frame.geometry.to_numpy()[~big].tolist())
            if big.any():
                kept.append(frame[big])
                write_kept()

        with (
            ClusterStart(cfg.cluster, models=False) as cluster,
            cluster.client() as client,
            rasterio.open(
                tmp,
                "w+",
                driver="GTiff",
                width=w,
                height=h,
                count=3,
                dtype="uint8" if n < 255 else "uint16",
                crs=crs_wkt,
                transform=target.affine,
                tiled=True,
                blockxsize=256,
                blockysize=256,
                compress="deflate",
                zlevel=1,
            ) as scratch,
        ):
            for res in compared_blocks(client, spec, blocks):  # the workers' tasks, as they finish
                scratch.write(
                    np.stack([res.code, res.before, res.after]).astype(scratch.dtypes[0]),
                    window=window_to_rio(res.window),
                )
                collect(res.polygons.interior)
                collect(merger.add(res.polygons))
            collect(merger.finish())
            timings["compare_vectorize_s"] = time.perf_counter() - t

            # pass 2: burn regions below the MMU, write change.tif, count transitions
            t = time.perf_counter()
            small_tree = shapely.STRtree(small) if small else None
            counts = np.zeros((n + 1, n + 1), np.int64)
            writer = BlockCOGWriter(
                stage / CHANGE_TIF,
                crs=crs_wkt,
                transform=target.affine,
                width=w,
                height=h,
                dtype=code_dtype,
                nodata=0,  # no change / not compared: transparent over the imagery in a GIS
                colormap={0: (0, 0, 0)} | colors,
                class_names=names,
                tags={
                    "TRANSITION_CODE": f"1 + (from_index) * {n} + (to_index), classes in id order",
                    "CLASSES": json.dumps([c.name for c in classes]),
                },
                overview_resampling="nearest",
                band_description="transition code (0 = no change / not compared)",
            )
            with writer:
                for win in blocks:
                    code, b, a = scratch.read(window=window_to_rio(win)).astype(np.int64)
                    if small_tree is not None:
                        box = shapely.box(*win.bounds(target.affine))
                        hit = small_tree.query(box, predicate="intersects")
                        if len(hit):
                            burn = rasterize(
                                [small[i] for i in hit.tolist()],
                                out_shape=win.shape,
                                transform=win.transform(target.affine),
                                fill=0,
                                default_value=1,
                                dtype="uint8",
                            ).astype(bool)
                            code[burn] = 0
                    a_final = np.where(code > 0, a, b)  # dropped change: still the before class
                    np.add.at(counts, (b.ravel(), a_final.ravel()), 1)
                    writer.write(win.row_off, win.col_off, code.astype(code_dtype))
            write_category_sidecar(
                stage / CHANGE_TIF,
                [(0, "no change", "#000000")] + [(c, names[c], _hex(colors[c])) for c in names],
                nodata_name="no change",
            )
            timings["mmu_write_s"] = time.perf_counter() - t
        tmp.unlink()

        # layers
        t = time.perf_counter()
        write_kept(force=True)
        write_layer_styles(
            gpkg,
            "landcover_change",
            categorized_polygon_qml("code", [(c, names[c], _hex(colors[c])) for c in names]),
            "landcover_change",
        )
        table, net = _tables(counts, classes, pixel_area)
        _write_table(table, gpkg, "transitions")
        _write_table(net, gpkg, "class_net_change")
        (stage / TRANSITIONS_CSV).write_text(_csv(table), encoding="utf-8")
        building_counts: dict[str, int] = {}
        building_params: dict = {}
        building_runs = _building_products(before, after, notify)
        if building_runs is not None:
            building_counts, building_params = match_buildings(*building_runs, target, cfg, gpkg)
        timings["layers_s"] = time.perf_counter() - t

        t = time.perf_counter()
        misreg = _misregistration(before, after, target, px_m)
        timings["misregistration_s"] = time.perf_counter() - t
        compared_px = int(counts[1:, 1:].sum())
        if compared_px == 0:
            notify("note: nothing was compared: nodata or the masks cover the whole overlap of the two dates")
        changed_px = int(counts[1:, 1:].sum() - np.trace(counts[1:, 1:]))
        summary = ChangeSummary(
            out=cfg.out,
            skipped=False,
            overlap_m2=overlap_m2,
            compared_m2=compared_px * pixel_area,
            changed_m2=changed_px * pixel_area,
            regions=n_written,
            grid=which,
            misregistration_m=None if misreg is None else misreg["shift_m"],
            buildings=building_counts,
            runs=(before.folder, after.folder),
        )
        summary.seconds = time.perf_counter() - t0
        timings["total_s"] = summary.seconds
        item = _item(
            cfg,
            before,
            after,
            target,
            which,
            summary,
            misreg,
            table,
            net,
            building_params,
            timings,
            started,
            fp,
            pixel_area,
        )
        write_item(item, stage / CHANGE_JSON)
    return summary


def _building_products(before: RunInfo, after: RunInfo, notify) -> tuple[RunInfo, RunInfo] | None:
    """The building runs to match footprints of: the runs themselves for building runs, or the building
    products of land-cover runs made together with a building model (one read, both products); None when
    there are none, or when the two dates' building models differ (a notice says so)."""
    if before.task == "buildings":
        return before, after
    if "buildings" not in products(before.item) or "buildings" not in products(after.item):
        return None
    b, a = load_run(before.folder, "buildings"), load_run(after.folder, "buildings")
    try:
        check_comparable(b, a)
    except ChangeInputError as exc:
        notify(f"note: building change left out: {exc}")
        return None
    return b, a


def mask_band(path: Path, date: dt.date) -> int:
    """The band of a mask raster for ``date``: band 1 of a single-band mask; of a time series (band
    descriptions holding dates, e.g. ``2015-07-11T10:00:08``), the band of that date."""
    try:
        with rasterio.open(path) as src:
            if src.count == 1:
                return 1
            descriptions = src.descriptions
    except rasterio.errors.RasterioError as exc:
        raise ChangeInputError(f"{path}: not a raster GDAL can read ({exc})") from None
    for i, d in enumerate(descriptions, 1):
        if d and d.replace("/", "-").replace(":", "-")[:10] == date.isoformat():
            return i
    raise ChangeInputError(f"{path}: {len(descriptions)} bands, none described with the date {date}")


def _change_frame(frame, transitions, before: RunInfo, after: RunInfo, crs_wkt: str) -> gpd.GeoDataFrame:
    """The ``landcover_change`` attributes of polygons with a transition ``code``."""
    codes = frame["code"].to_numpy()
    return gpd.GeoDataFrame(
        {
            "code": codes.astype(np.int32),
            "from_class": [transitions[int(c)][0].name for c in codes],
            "to_class": [transitions[int(c)][1].name for c in codes],
            "from_id": np.array([transitions[int(c)][0].id for c in codes], np.int32),
            "to_id": np.array([transitions[int(c)][1].id for c in codes], np.int32),
            "area_m2": frame["area_m2"].to_numpy(),
            "date_before": before.date.isoformat(),
            "date_after": after.date.isoformat(),
        },
        geometry=frame.geometry.to_numpy(),
        crs=crs_wkt,
    )


def _mix(to: tuple[int, int, int], frm: tuple[int, int, int], w: float = 0.65) -> tuple[int, int, int]:
    """A transition's colour: mostly the new class's, tinted by the old one's (so land -> water and
    vegetation -> water differ)."""
    r, g, b = (round(w * t + (1 - w) * f) for t, f in zip(to, frm, strict=True))
    return r, g, b


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def _tables(counts: np.ndarray, classes, pixel_area: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transitions (every from -> to pair with area, unchanged pairs included) and per-class net change."""
    total = counts[1:, 1:].sum()
    rows = []
    for i, cb in enumerate(classes, 1):
        for j, ca in enumerate(classes, 1):
            px = int(counts[i, j])
            if px:
                rows.append(
                    {
                        "from_class": cb.name,
                        "to_class": ca.name,
                        "from_id": cb.id,
                        "to_id": ca.id,
                        "changed": cb.id != ca.id,
                        "pixels": px,
                        "area_m2": px * pixel_area,
                        "percent": 100.0 * px / total if total else 0.0,
                    }
                )
    table = pd.DataFrame(
        rows,
        columns=["from_class", "to_class", "from_id", "to_id", "changed", "pixels", "area_m2", "percent"],
    )
    net = []
    for i, c in enumerate(classes, 1):
        before_px = int(counts[i, 1:].sum())
        after_px = int(counts[1:, i].sum())
        net.append(
            {
                "class": c.name,
                "class_id": c.id,
                "area_before_m2": before_px * pixel_area,
                "area_after_m2": after_px * pixel_area,
                "net_change_m2": (after_px - before_px) * pixel_area,
                "net_change_percent": 100.0 * (after_px - before_px) / before_px if before_px else None,
            }
        )
    return table, pd.DataFrame(net)


def _write_table(df: pd.DataFrame, gpkg: Path, layer: str) -> None:
    """A non-spatial GeoPackage table (attributes only)."""
    import pyogrio

    from geoseg.errors import OutputError

    try:
        pyogrio.write_dataframe(df, gpkg, layer=layer, driver="GPKG")
    except Exception as exc:
        raise OutputError(f"cannot write table {layer!r} to {gpkg}: {exc}") from exc
    # a default style, so QGIS opens every layer of the file styled (column names as display names)
    aliases = {c: c.replace("_", " ") for c in df.columns}
    write_layer_styles(gpkg, layer, table_qml(aliases), layer)


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.4f")
    return buf.getvalue()


def _misregistration(before: RunInfo, after: RunInfo, target, px_m: float) -> dict | None:
    """Residual shift between the two dates' imagery on the common grid (phase correlation, subpixel)."""
    from skimage.registration import phase_cross_correlation

    if before.source is None or after.source is None:
        return None
    h, w = int(target.shape.y), int(target.shape.x)
    sh, sw = min(h, MISREG_MAX_PX), min(w, MISREG_MAX_PX)
    if sh < 32 or sw < 32:
        return None
    win = Window((h - sh) // 2, (w - sw) // 2, sh, sw)
    with Aligned(target) as al:
        imgs, valid = [], np.ones((sh, sw), bool)
        for r in (before, after):
            g = al.read_gray(r.source, win)
            valid &= al.read_valid(r.source, win)
            imgs.append(g)
    if valid.mean() < 0.5:
        return None
    norm = []
    for g in imgs:
        v = g[valid]
        g = np.where(valid, (g - v.mean()) / (v.std() or 1.0), 0.0)
        norm.append(g)
    shift, error, _ = phase_cross_correlation(norm[0], norm[1], upsample_factor=20, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    return {
        "method": "phase correlation (skimage.registration.phase_cross_correlation, upsample 20) of the "
        "mean of bands 1-3, central window",
        "window_px": [sh, sw],
        "shift_px": [round(dy, 3), round(dx, 3)],
        "shift_m": round(math.hypot(dy, dx) * px_m, 3),
        "error": round(float(error), 4),
        "note": "shift that registers AFTER onto BEFORE (rows, cols)",
    }


def _item(
    cfg,
    before,
    after,
    target,
    which,
    summary,
    misreg,
    table,
    net,
    building_params,
    timings,
    started,
    fp,
    pixel_area,
) -> pystac.Item:
    fp_geo = target.footprint("EPSG:4326", npoints=50)
    finished = dt.datetime.now(dt.timezone.utc)

    def iso(d: dt.date) -> str:
        return f"{d.isoformat()}T00:00:00Z"

    start, end = sorted([before.date, after.date])
    item = pystac.Item(
        id=f"change-{before.date}-{after.date}-{fp[:8]}",
        geometry=shapely.geometry.mapping(fp_geo.geom),
        bbox=list(fp_geo.boundingbox),
        datetime=None,
        properties={
            "start_datetime": iso(start),
            "end_datetime": iso(end),
            "created": finished.isoformat().replace("+00:00", "Z"),
            "geoseg:processed": {
                "started": started.isoformat().replace("+00:00", "Z"),
                "finished": finished.isoformat().replace("+00:00", "Z"),
            },
            "geoseg:fingerprint": fp,
            "geoseg:dates": {"before": before.date.isoformat(), "after": after.date.isoformat()},
            "geoseg:runs": {
                k: {
                    "id": r.item_id,
                    "folder": r.folder.as_posix(),
                    "date": r.date.isoformat(),
                    "task": r.task,
                    "model": r.model_id,
                    "model_path": r.item.get("properties", {}).get("geoseg:model", {}).get("path"),
                }
                for k, r in (("before", before), ("after", after))
            },
            "geoseg:grid": {
                "of": which,
                "crs": target.crs.to_wkt(),
                "epsg": target.crs.to_epsg(),
                "transform": list(target.affine)[:6],
                "shape": [int(target.shape.y), int(target.shape.x)],
                "pixel_area_m2": pixel_area,
                "resampling": "nearest: classes, ids, masks, confidence; bilinear: imagery (misregistration)",
            },
            "geoseg:areas_m2": {
                "footprint_overlap": summary.overlap_m2,
                "compared": summary.compared_m2,
                "changed": summary.changed_m2,
            },
            "geoseg:misregistration": misreg,
            "geoseg:parameters": _jsonable(
                cfg.model_dump(mode="json", exclude={"overwrite", "progress"}) | building_params
            ),
            "geoseg:transitions": _jsonable(table.to_dict(orient="records")),
            "geoseg:net_change": _jsonable(net.to_dict(orient="records")),
            "geoseg:buildings": summary.buildings or None,
            "geoseg:timing": timings,
            "geoseg:versions": software_versions(),
        },
    )
    out = cfg.out.resolve()
    import os

    for key, r in (("before", before), ("after", after)):
        rel = os.path.relpath(r.folder / "run.json", out)
        item.add_link(
            pystac.Link(
                rel="derived_from", target=rel, media_type="application/json", title=f"{key}: {r.item_id}"
            )
        )
    item.add_asset(
        "change",
        pystac.Asset(
            href=f"./{CHANGE_TIF}",
            media_type=COG_MEDIA,
            roles=["data"],
            title="Transition code per pixel (0 = no change / not compared)",
        ),
    )
    item.add_asset(
        "vectors",
        pystac.Asset(
            href=f"./{CHANGE_GPKG}",
            media_type=GPKG_MEDIA,
            roles=["data"],
            title="Change polygons and transition tables",
        ),
    )
    item.add_asset(
        "transitions",
        pystac.Asset(
            href=f"./{TRANSITIONS_CSV}", media_type="text/csv", roles=["data"], title="Transition areas"
        ),
    )
    n = len(before.classes)
    add_class_extensions(
        item,
        "change",
        [
            (1 + i * n + j, f"{a.name} to {b.name}", b.color)
            for i, a in enumerate(before.classes)
            for j, b in enumerate(before.classes)
            if i != j
        ],
        "uint8" if n * n + 1 <= 255 else "uint16",
        None,
        math.sqrt(pixel_area),
    )
    return item
