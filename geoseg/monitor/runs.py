"""One date's land-cover run on its AOI clip: a regular run folder (landcover.tif, geoseg.gpkg, run.json).

Checkpoints go through ``geoseg run`` (the tiled Dask pipeline; bands picked by name). ``baseline:landcover``
runs here, on the whole clip in one array (the clip is the AOI window, so this is bounded by the AOI, not the
scene): it is a per-pixel spectral rule set with no weights, which ``geoseg run`` on this branch does not
accept yet. Both write the same run folder layout, so ``geoseg change`` compares either.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely

from geoseg.cluster import ClusterStart
from geoseg.errors import ModelMismatchError
from geoseg.io.cog import BlockCOGWriter
from geoseg.io.vector import write_layer
from geoseg.monitor.config import MonitorWorkflow
from geoseg.report import COG_MEDIA, GPKG_MEDIA, build_run_item, write_item
from geoseg.rundir import RUN_FILE, atomic_write_text, staging_dir
from geoseg.styles import categorized_polygon_qml
from geoseg.vectorize import polygons_to_frame

LANDCOVER_TIF = "landcover.tif"
GPKG = "geoseg.gpkg"


def run_date(wf: MonitorWorkflow, clip: Path, date: dt.date, out: Path, cluster: ClusterStart | None) -> None:
    """Produce the run folder ``out`` for the clip of one date (replacing what is there)."""
    if wf.is_baseline:
        _run_baseline(wf, clip, date, out)
    else:
        _run_checkpoint(wf, clip, date, out, cluster)


def _run_checkpoint(
    wf: MonitorWorkflow, clip: Path, date: dt.date, out: Path, cluster: ClusterStart | None
) -> None:
    from geoseg.config import RunConfig
    from geoseg.models.meta import read_meta
    from geoseg.run import run_scene

    meta = read_meta(wf.model)
    bands = None
    if wf.bands is not None:
        names = [b.lower() for b in wf.bands]
        missing = [b for b in meta.bands if b.lower() not in names]
        if missing:
            raise ModelMismatchError(
                f"{wf.model}: needs band(s) {missing}; the workflow's bands are {wf.bands}"
            )
        bands = [names.index(b.lower()) + 1 for b in meta.bands]
    params = wf.run.model_dump()
    own_date = "date" in RunConfig.model_fields  # geoseg run records the acquisition date itself
    if own_date:
        params["date"] = date
    cfg = RunConfig(
        scene=clip, out=out, model=Path(wf.model), bands=bands, overwrite=True, progress=False,
        cluster=wf.cluster, **params,
    )  # fmt: skip
    run_scene(cfg, notify=lambda m: None, cluster=cluster)
    if not own_date:
        _stamp_date(out / RUN_FILE, date)


def _stamp_date(run_json: Path, date: dt.date) -> None:
    """Make the run's STAC datetime its acquisition date (processing time stays in created/end_datetime)."""
    item = json.loads(run_json.read_text())
    item["properties"]["datetime"] = f"{date.isoformat()}T00:00:00Z"
    item["properties"]["geoseg:acquisition_date"] = date.isoformat()
    atomic_write_text(run_json, json.dumps(item, indent=2) + "\n")


def _run_baseline(wf: MonitorWorkflow, clip: Path, date: dt.date, out: Path) -> None:
    from geoseg.baseline import get_baseline

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    baseline = get_baseline(wf.model)
    with rasterio.open(clip) as src:
        image = src.read()
        valid = src.dataset_mask() > 0
        gsd = (abs(src.res[0]) + abs(src.res[1])) / 2 if src.crs and not src.crs.is_geographic else None
        bands = [d or "" for d in src.descriptions]
        crs, transform, shape, bounds = src.crs, src.transform, (src.height, src.width), tuple(src.bounds)
    index = baseline.predict(image, valid, bands, gsd)
    ids = np.array([c.id for c in baseline.classes], np.uint8)
    labels = np.where(valid, ids[index], 0).astype(np.uint8)
    names = {c.id: c.name for c in baseline.classes}
    crs_wkt = crs.to_wkt()
    polys = [
        (shapely.geometry.shape(g), int(v))
        for g, v in rasterio.features.shapes(labels, mask=labels > 0, transform=transform, connectivity=4)
    ]
    with staging_dir(out) as stage:
        with BlockCOGWriter(
            stage / LANDCOVER_TIF, crs=crs_wkt, transform=transform, width=shape[1], height=shape[0],
            dtype="uint8", nodata=0, colormap={c.id: c.rgb for c in baseline.classes}, class_names=names,
            tags={"GEOSEG_MODEL": wf.model},
        ) as writer:  # fmt: skip
            writer.write(0, 0, labels)
        frame = polygons_to_frame(polys, names, crs_wkt)
        qml = categorized_polygon_qml("class_id", [(c.id, c.name, c.color) for c in baseline.classes])
        write_layer(frame, stage / GPKG, "landcover", style_qml=qml, style_name="landcover")
        finished = dt.datetime.now(dt.timezone.utc)
        item = build_run_item(
            item_id=f"{date.isoformat()}-landcover",
            scene_path=clip,
            scene_crs=crs_wkt,
            scene_bounds=bounds,
            scene_shape=shape,
            scene_transform=transform,
            assets={
                "landcover": (
                    stage / LANDCOVER_TIF,
                    COG_MEDIA,
                    ["data", "classification"],
                    "Land-cover classes",
                ),
                "vectors": (stage / GPKG, GPKG_MEDIA, ["data"], "Land-cover polygons"),
            },
            parameters={"model": wf.model, "bands": bands},
            model={
                "path": wf.model,
                "metadata": {
                    "name": wf.model,
                    "task": baseline.task,
                    "classes": [c.model_dump(mode="json") for c in baseline.classes],
                },
            },
            timing={"total_s": time.perf_counter() - t0},
            started=started,
            finished=finished,
            out_dir=stage,
            acquired=date,
        )
        item.properties["geoseg:acquisition_date"] = date.isoformat()
        write_item(item, stage / RUN_FILE)
