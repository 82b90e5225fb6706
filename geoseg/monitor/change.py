"""The change step between two dates' run folders.

Uses ``geoseg.change.run_change`` (``geoseg change``) where this build has it. Until that module is merged,
a minimal stand-in with the same output names runs instead: both class rasters on the finer grid of their
overlap (nearest, rasterio), change only where both dates are valid, regions under the MMU dropped,
``change.tif`` + ``change.gpkg`` (layer ``landcover_change``: from_class, to_class, area_m2, date_before,
date_after) + ``transitions.csv`` + ``change.json`` (STAC Item linking both runs).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path

import numpy as np

from geoseg.rundir import RUN_FILE, staging_dir

CHANGE_GPKG = "change.gpkg"
CHANGE_JSON = "change.json"
CHANGE_LAYER = "landcover_change"
CODE_BASE = 16  # transition code = from_id * 16 + to_id (0 = no change or invalid)


def have_change_module() -> bool:
    try:
        from geoseg.change import ChangeConfig, run_change  # noqa: F401
    except ImportError:
        return False
    return True


def compute_change(before: Path, after: Path, out: Path, mmu_m2: float, grid: str) -> None:
    """Write the change folder ``out`` comparing run folders ``before`` and ``after`` (replacing ``out``)."""
    if have_change_module():
        from geoseg.change import ChangeConfig, run_change

        run_change(
            ChangeConfig(
                before=before, after=after, out=out, grid=grid, mmu_m2=mmu_m2, overwrite=True, progress=False
            ),
            notify=lambda m: None,
        )
        return
    _fallback_change(before, after, out, mmu_m2, grid)


def run_date(run_dir: Path) -> dt.date:
    props = json.loads((run_dir / RUN_FILE).read_text())["properties"]
    stamp = props.get("geoseg:acquisition_date") or props["datetime"]
    return dt.date.fromisoformat(stamp[:10])


def class_names(tif: Path) -> dict[int, str]:
    import rasterio

    with rasterio.open(tif) as src:
        raw = src.tags().get("CLASS_NAMES")
    return {int(k): v for k, v in json.loads(raw).items()} if raw else {}


def _fallback_change(before: Path, after: Path, out: Path, mmu_m2: float, grid: str) -> None:
    import rasterio
    import rasterio.features
    import rasterio.warp
    import rasterio.windows
    import shapely
    from odc.geo.geobox import GeoBox
    from skimage.measure import label

    from geoseg.io.cog import BlockCOGWriter
    from geoseg.io.vector import write_layer
    from geoseg.report import COG_MEDIA, GPKG_MEDIA, write_item
    from geoseg.styles import categorized_polygon_qml

    d0, d1 = run_date(before), run_date(after)
    tif0, tif1 = before / "landcover.tif", after / "landcover.tif"
    names = class_names(tif0) | class_names(tif1)
    with rasterio.open(tif0) as a, rasterio.open(tif1) as b:
        if grid == "finer":
            ref, other = (a, b) if abs(a.res[0] * a.res[1]) <= abs(b.res[0] * b.res[1]) else (b, a)
        else:
            ref, other = (a, b) if grid == "before" else (b, a)
        ob = rasterio.warp.transform_bounds(other.crs, ref.crs, *other.bounds)
        lo = (max(ref.bounds[0], ob[0]), max(ref.bounds[1], ob[1]))
        hi = (min(ref.bounds[2], ob[2]), min(ref.bounds[3], ob[3]))
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            raise ValueError(f"{before} and {after} do not overlap")
        win = rasterio.windows.from_bounds(*lo, *hi, transform=ref.transform)
        win = win.round_offsets(op="ceil").round_lengths(op="floor")
        transform = ref.window_transform(win)
        ref_data = ref.read(1, window=win)
        other_data = np.zeros_like(ref_data)
        rasterio.warp.reproject(
            rasterio.band(other, 1), other_data, dst_transform=transform, dst_crs=ref.crs,
            dst_nodata=0, resampling=rasterio.warp.Resampling.nearest,
        )  # fmt: skip
        crs = ref.crs
        first, second = (ref_data, other_data) if ref is a else (other_data, ref_data)
    px_area = abs(transform.a * transform.e)
    valid = (first > 0) & (second > 0)
    code = np.where(valid & (first != second), first.astype(np.uint16) * CODE_BASE + second, 0).astype(
        np.uint8
    )
    regions = label(code, background=0, connectivity=1)
    counts = np.bincount(regions.ravel())
    small = counts * px_area < mmu_m2
    small[0] = False
    code[small[regions]] = 0
    polys = [
        (shapely.geometry.shape(g), int(v))
        for g, v in rasterio.features.shapes(code, mask=code > 0, transform=transform, connectivity=4)
    ]
    import geopandas as gpd

    frm = [v // CODE_BASE for _, v in polys]
    to = [v % CODE_BASE for _, v in polys]
    frame = gpd.GeoDataFrame(
        {
            "from_id": np.array(frm, np.int32),
            "to_id": np.array(to, np.int32),
            "from_class": [names.get(v, str(v)) for v in frm],
            "to_class": [names.get(v, str(v)) for v in to],
            "area_m2": np.array([g.area for g, _ in polys], float),
            "date_before": [d0.isoformat()] * len(polys),
            "date_after": [d1.isoformat()] * len(polys),
        },
        geometry=[g for g, _ in polys],
        crs=crs.to_wkt(),
    )
    # transitions over the valid overlap: unchanged (incl. regions under the MMU) on the diagonal
    kept_from = np.where(code > 0, code // CODE_BASE, first)[valid]
    kept_to = np.where(code > 0, code % CODE_BASE, first)[valid]
    pairs, n = np.unique(kept_from.astype(np.int32) * CODE_BASE + kept_to, return_counts=True)
    total = float(valid.sum()) * px_area
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["from_class", "to_class", "area_m2", "percent"])
    for p, c in zip(pairs.tolist(), n.tolist(), strict=True):
        area = c * px_area
        w.writerow(
            [names.get(p // CODE_BASE), names.get(p % CODE_BASE), f"{area:.1f}", f"{100 * area / total:.4f}"]
        )
    colors = _class_colors(tif1)
    with staging_dir(out) as stage:
        cmap = {int(v): colors.get(int(v) % CODE_BASE, (0, 0, 0)) for v in np.unique(code) if v}
        with BlockCOGWriter(
            stage / "change.tif", crs=crs.to_wkt(), transform=transform, width=code.shape[1],
            height=code.shape[0], dtype="uint8", nodata=0, colormap=cmap or None,
            class_names={v: f"{names.get(v // CODE_BASE)} -> {names.get(v % CODE_BASE)}" for v in cmap},
        ) as writer:  # fmt: skip
            writer.write(0, 0, code)
        cats = [
            (i, n_, "#{:02x}{:02x}{:02x}".format(*colors.get(i, (128, 128, 128)))) for i, n_ in names.items()
        ]
        write_layer(
            frame, stage / CHANGE_GPKG, CHANGE_LAYER, style_qml=categorized_polygon_qml("to_id", cats)
        )
        (stage / "transitions.csv").write_text(buf.getvalue())
        import pystac

        geobox = GeoBox(code.shape, transform, crs.to_wkt())
        fp = geobox.footprint("EPSG:4326", npoints=20)
        item = pystac.Item(
            id=f"change-{d0.isoformat()}-{d1.isoformat()}",
            geometry=shapely.geometry.mapping(fp.geom),
            bbox=list(fp.boundingbox),
            datetime=dt.datetime.combine(d1, dt.time(), dt.timezone.utc),
            properties={
                "start_datetime": f"{d0.isoformat()}T00:00:00Z",
                "end_datetime": f"{d1.isoformat()}T00:00:00Z",
                "geoseg:change": {
                    "grid": grid, "mmu_m2": mmu_m2, "overlap_valid_m2": total,
                    "changed_m2": float((code > 0).sum()) * px_area,
                    "implementation": "geoseg.monitor stand-in",
                },
            },
        )  # fmt: skip
        for key, path, media, title in (
            ("change", "./change.tif", COG_MEDIA, "Transition codes"),
            ("vectors", f"./{CHANGE_GPKG}", GPKG_MEDIA, "Change polygons"),
            ("transitions", "./transitions.csv", "text/csv", "Transition areas"),
        ):
            item.add_asset(key, pystac.Asset(href=path, media_type=media, title=title, roles=["data"]))
        for run in (before, after):
            rel = os.path.relpath(run / RUN_FILE, out.resolve())
            item.add_link(pystac.Link("derived_from", rel, pystac.MediaType.JSON))
        write_item(item, stage / CHANGE_JSON)


def _class_colors(tif: Path) -> dict[int, tuple[int, int, int]]:
    import rasterio

    with rasterio.open(tif) as src:
        try:
            return {k: v[:3] for k, v in src.colormap(1).items()}
        except ValueError:
            return {}
