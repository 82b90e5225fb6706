"""The sample GeoPackage: ``samples`` points for the analyst, ``strata`` and ``design`` tables; and reading
it back once ``ref_class`` is filled in."""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
from rasterio.crs import CRS

from geoseg import __version__
from geoseg.areas.design import SampleDesign
from geoseg.areas.maps import ClassCounts, ClassMap, SampleError
from geoseg.areas.style import sample_points_qml
from geoseg.errors import OutputError, OutputExistsError
from geoseg.outputs.gpkg import GPKG_VERSION, write_layer_styles

SAMPLES_LAYER = "samples"
STRATA_TABLE = "strata"
DESIGN_TABLE = "design"


def _hex(rgb: tuple[int, int, int] | None) -> str | None:
    return None if rgb is None else "#{:02x}{:02x}{:02x}".format(*rgb)


def write_design(
    design: SampleDesign, out: str | os.PathLike[str], *, blind: bool = False, overwrite: bool = False
) -> Path:
    """Write the sample GeoPackage atomically. ``blind`` leaves the map class out of the point layer (the
    analyst labels without seeing it; ``geoseg areas`` reads it from the map)."""
    out = Path(out)
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"{out}: the sample is written as a GeoPackage (.gpkg)")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists (it may hold labels); use --overwrite to replace it")
    cmap = design.map
    x, y = design.xy()
    order = np.argsort(design.sample_id)
    cols: dict[str, object] = {"sample_id": design.sample_id[order].astype(np.int64)}
    if not blind:
        cols["map_class"] = design.map_class[order].astype(np.int64)
        cols["map_name"] = [cmap.name(v) for v in design.map_class[order]]
    cols["ref_class"] = pd.Series([None] * design.n, dtype=object)
    cols["comment"] = pd.Series([None] * design.n, dtype=object)
    points = gpd.GeoDataFrame(cols, geometry=gpd.points_from_xy(x[order], y[order]), crs=cmap.crs)
    strata = pd.DataFrame(
        {
            "map_class": [s.map_class for s in design.strata],
            "map_name": [s.map_name for s in design.strata],
            "pixels": [s.pixels for s in design.strata],
            "area_m2": [s.area_m2 for s in design.strata],
            "weight": [s.weight for s in design.strata],
            "n_sample": [s.n for s in design.strata],
            "expected_ua": [s.expected_ua for s in design.strata],
        }
    )
    t = cmap.transform
    meta = {
        "map": cmap.path.name,
        "width": cmap.width,
        "height": cmap.height,
        "transform": ",".join(f"{v:.12g}" for v in (t.a, t.b, t.c, t.d, t.e, t.f)),
        "crs": cmap.crs.to_string(),
        "seed": design.seed,
        "n": design.n,
        "allocation": design.allocation,
        "min_per_stratum": design.min_per_stratum,
        "target_se_overall_accuracy": "" if design.target_se is None else design.target_se,
        "blind": int(blind),
        "nodata": ",".join(str(v) for v in cmap.nodata) or "none",
        "unit": "pixel (point at its centre)",
        "created": design.created,
        "software": f"geoseg {__version__}",
    }
    table = pd.DataFrame({"key": list(meta), "value": [str(v) for v in meta.values()]})
    classes = [(s.map_class, s.map_name, _hex(cmap.colors.get(s.map_class))) for s in design.strata]
    offered = {k: v for k, v in cmap.names.items()} | {s.map_class: s.map_name for s in design.strata}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.partial.gpkg")
    try:
        pyogrio.write_dataframe(
            points,
            tmp,
            layer=SAMPLES_LAYER,
            driver="GPKG",
            geometry_type="Point",
            dataset_options={"VERSION": GPKG_VERSION},
            layer_options={"SPATIAL_INDEX": "YES"},
        )
        pyogrio.write_dataframe(strata, tmp, layer=STRATA_TABLE, driver="GPKG")
        pyogrio.write_dataframe(table, tmp, layer=DESIGN_TABLE, driver="GPKG")
        write_layer_styles(tmp, SAMPLES_LAYER, sample_points_qml(classes, blind, offered), "geoseg samples")
        os.replace(tmp, out)
    except OutputError:
        raise
    except Exception as exc:
        raise OutputError(f"cannot write the sample {out}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out


def design_record(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``design`` table of a sample GeoPackage as a dict ({} if it has none or cannot be read)."""
    try:
        d = pyogrio.read_dataframe(path, layer=DESIGN_TABLE, read_geometry=False)
        return dict(zip(d["key"].astype(str), d["value"].astype(str), strict=True))
    except Exception:  # noqa: BLE001 - no such table or file: the checks that follow report it
        return {}


@dataclass
class LabelledSample:
    """Map and reference class of every labelled sample point."""

    sample_id: np.ndarray
    map_class: np.ndarray
    ref_class: np.ndarray
    unlabelled: int
    design: dict[str, str]
    strata_pixels: dict[int, int] | None


def _is_empty(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _parse_ref(v: object, by_name: dict[str, int], known: set[int]) -> int | None:
    if isinstance(v, (int, np.integer)):
        return int(v) if int(v) in known else None
    if isinstance(v, float):
        return int(v) if v.is_integer() and int(v) in known else None
    s = str(v).strip()
    try:
        k = int(float(s))
        return k if k in known else None
    except ValueError:
        pass
    return by_name.get(s.casefold())


def read_labelled_sample(
    path: str | os.PathLike[str],
    cmap: ClassMap,
    counts: ClassCounts,
    *,
    skip_unlabelled: bool = False,
    layer: str = SAMPLES_LAYER,
) -> LabelledSample:
    """Read a labelled sample of ``cmap``; every check fails with a one-line ``SampleError``."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"{path}: no such sample file")
    try:
        layers = {str(n) for n, _ in pyogrio.list_layers(path)}
    except Exception:
        raise SampleError(f"{path}: not a GeoPackage or vector file") from None
    if layer not in layers:
        raise SampleError(f"{path}: no layer {layer!r} (write one with geoseg sample)")
    gdf = pyogrio.read_dataframe(path, layer=layer)
    if "ref_class" not in gdf.columns:
        raise SampleError(f"{path}: layer {layer!r} has no ref_class field")
    if not len(gdf):
        raise SampleError(f"{path}: layer {layer!r} has no sample points")
    if gdf.crs is None or not CRS.from_user_input(gdf.crs.to_wkt()) == cmap.crs:
        raise SampleError(f"{path}: samples are in {gdf.crs}, the map {cmap.path.name} in {cmap.crs}")
    ids = gdf["sample_id"].to_numpy() if "sample_id" in gdf.columns else np.arange(1, len(gdf) + 1)
    geoms = gdf.geometry
    if geoms.isna().any() or (shapely.get_num_geometries(geoms.to_numpy()) != 1).any():
        raise SampleError(f"{path}: every sample must be one point")
    pts = shapely.get_geometry(geoms.to_numpy(), 0)  # MultiPoint of one point (a re-saved layer) too
    if (shapely.get_type_id(pts) != 0).any():
        raise SampleError(f"{path}: every sample must be a point")
    xs, ys = shapely.get_x(pts), shapely.get_y(pts)
    inv = ~cmap.transform
    cols, rows = inv @ (xs, ys)
    cols, rows = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    outside = (cols < 0) | (rows < 0) | (cols >= cmap.width) | (rows >= cmap.height)
    if outside.any():
        raise SampleError(f"{path}: sample {ids[outside][0]} lies outside the map {cmap.path.name}")
    with rasterio.open(cmap.path) as src:
        at = np.array([v[0] for v in src.sample(zip(xs.tolist(), ys.tolist(), strict=True), indexes=1)])
    bad = ~cmap.valid(at)
    if bad.any():
        raise SampleError(f"{path}: sample {ids[bad][0]} falls on nodata of the map {cmap.path.name}")
    if "map_class" in gdf.columns:
        stored = gdf["map_class"].to_numpy()
        diff = stored != at
        if diff.any():
            i = int(np.flatnonzero(diff)[0])
            raise SampleError(
                f"{path}: sample {ids[i]} has map_class {stored[i]} but the map {cmap.path.name} has {at[i]} "
                "there (a sample of another map?)"
            )
    known = set(cmap.names) | set(counts.classes)
    by_name = {cmap.name(k).casefold(): k for k in known}
    refs = gdf["ref_class"].tolist()
    empty = np.array([_is_empty(v) for v in refs], dtype=bool)
    if empty.all():
        raise SampleError(f"{path}: no sample is labelled yet (fill in ref_class, by class id or name)")
    if empty.any() and not skip_unlabelled:
        raise SampleError(
            f"{path}: {int(empty.sum())} of {len(refs)} samples have no ref_class (first: sample "
            f"{ids[empty][0]}); label them or pass --skip-unlabelled"
        )
    parsed = []
    for i, v in enumerate(refs):
        if empty[i]:
            parsed.append(-1)
            continue
        k = _parse_ref(v, by_name, known)
        if k is None:
            names = ", ".join(f"{c}={cmap.name(c)}" for c in sorted(known))
            raise SampleError(
                f"{path}: sample {ids[i]} has ref_class {v!r}, not a class of the map ({names})"
            )
        parsed.append(k)
    keep = ~empty
    design: dict[str, str] = {}
    strata_pixels = None
    if DESIGN_TABLE in layers:
        d = pyogrio.read_dataframe(path, layer=DESIGN_TABLE, read_geometry=False)
        design = dict(zip(d["key"].astype(str), d["value"].astype(str), strict=True))
    if STRATA_TABLE in layers:
        s = pyogrio.read_dataframe(path, layer=STRATA_TABLE, read_geometry=False)
        strata_pixels = dict(zip(s["map_class"].astype(int), s["pixels"].astype(int), strict=True))
        if strata_pixels != {k: counts.pixels[k] for k in counts.classes}:
            raise SampleError(
                f"{path}: its strata table does not match the pixel counts of {cmap.path.name} "
                "(the sample was drawn from another or an earlier version of the map)"
            )
    return LabelledSample(
        sample_id=np.asarray(ids)[keep],
        map_class=at[keep].astype(np.int64),
        ref_class=np.asarray(parsed, dtype=np.int64)[keep],
        unlabelled=int(empty.sum()),
        design=design,
        strata_pixels=strata_pixels,
    )
