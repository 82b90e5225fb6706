"""The run manifest: a STAC Item describing one ``geoseg run`` (inputs, outputs, model, settings, timing)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pystac
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from pystac.extensions.projection import ProjectionExtension
from rasterio.crs import CRS
from shapely.geometry import mapping

from geoseg.errors import OutputError
from geoseg.io.staging import atomic_write_text

# the footprint is densified (100 points a side) then simplified: drops collinear points, keeps curved edges
FOOTPRINT_TOLERANCE_DEG = 1e-7
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
# distribution name -> key in geoseg:versions
_DISTRIBUTIONS = {
    "geoseg": "geoseg",
    "torch": "torch",
    "segmentation-models-pytorch": "segmentation_models_pytorch",
    "rasterio": "rasterio",
    "dask": "dask",
    "numpy": "numpy",
}

GPKG_MEDIA = "application/geopackage+sqlite3"
COG_MEDIA = "image/tiff; application=geotiff; profile=cloud-optimized"


def software_versions() -> dict[str, str]:
    """Versions of Python, geoseg and the libraries that shape its results (only those installed)."""
    versions = {"python": platform.python_version()}
    for dist, key in _DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        if key == "rasterio":
            versions["GDAL"] = rasterio.__gdal_version__
    return versions


def _jsonable(obj: Any) -> Any:
    """Plain JSON data from parameters/metadata holding paths, numpy values, datetimes, enums, models."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if hasattr(obj, "model_dump"):  # pydantic models (the run configuration)
        return _jsonable(obj.model_dump(mode="json"))
    return str(obj)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _href(path: str | os.PathLike[str], out_dir: Path | None) -> str:
    p = Path(path)
    if out_dir is not None and p.is_absolute():
        p = Path(os.path.relpath(p, out_dir))
    if p.is_absolute():
        return p.as_posix()
    return p.as_posix() if p.as_posix().startswith(("./", "../")) else f"./{p.as_posix()}"


def build_run_item(
    *,
    item_id: str,
    scene_path: str | os.PathLike[str],
    scene_crs: object,
    scene_bounds: Sequence[float],  # xmin, ymin, xmax, ymax
    scene_shape: tuple[int, int],
    scene_transform: Affine,
    assets: Mapping[str, tuple[str | os.PathLike[str], str, list[str], str]],
    parameters: dict[str, Any],
    model: dict[str, Any],
    timing: dict[str, float],
    started: dt.datetime,
    finished: dt.datetime,
    out_dir: str | os.PathLike[str] | None = None,
    acquired: dt.date | Literal[False] | None = False,
) -> pystac.Item:
    """STAC Item of one run: footprint of the scene in EPSG:4326, projection of the scene grid, outputs.

    ``assets`` maps a key to (path, media type, roles, title); hrefs are written relative to ``out_dir``
    (default: the folder of the first asset given with an absolute path; relative paths are kept), e.g.
    "./landcover.tif". The scene itself becomes the asset
    "source" (role "source", absolute href). ``datetime`` is ``finished`` in UTC; ``start_datetime`` and
    ``end_datetime`` span the run.

    With ``acquired`` (a date, or None when the acquisition date is unknown) the Item describes the imagery's
    time instead: ``datetime`` is the acquisition date (or null, with ``start_datetime``/``end_datetime``
    both the processing time as STAC requires), the run's span goes to ``geoseg:processed``, and the
    source href is relative to ``out_dir`` too.
    """
    crs = CRS.from_user_input(scene_crs)
    h, w = (int(v) for v in scene_shape)
    try:
        footprint = GeoBox((h, w), scene_transform, crs.to_wkt()).footprint("EPSG:4326", npoints=100)
    except Exception as exc:
        raise OutputError(f"cannot compute the footprint of {scene_path} in EPSG:4326: {exc}") from exc
    if out_dir is None:  # the folder of the first asset given with an absolute path
        out_dir = next((Path(a[0]).parent for a in assets.values() if Path(a[0]).is_absolute()), None)
    out = Path(out_dir).resolve() if out_dir is not None else None
    finished_utc = _utc(finished)
    versions = software_versions()

    item = pystac.Item(
        id=item_id,
        geometry=mapping(footprint.geom.simplify(FOOTPRINT_TOLERANCE_DEG)),
        bbox=list(footprint.boundingbox),
        datetime=finished_utc,
        properties={
            "start_datetime": _utc(started).isoformat().replace("+00:00", "Z"),
            "end_datetime": finished_utc.isoformat().replace("+00:00", "Z"),
            "created": finished_utc.isoformat().replace("+00:00", "Z"),
            "processing:software": {k: v for k, v in versions.items() if k != "python"},
            "geoseg:parameters": _jsonable(parameters),
            "geoseg:model": _jsonable(model),
            "geoseg:timing": _jsonable(timing),
            "geoseg:versions": versions,
        },
    )
    if acquired is not False:
        processed = {k: item.properties.pop(k) for k in ("start_datetime", "end_datetime")}
        item.properties["geoseg:processed"] = {
            "started": processed["start_datetime"],
            "finished": processed["end_datetime"],
        }
        item.properties["geoseg:acquisition_date"] = acquired.isoformat() if acquired else None
        if acquired:
            item.datetime = dt.datetime(acquired.year, acquired.month, acquired.day, tzinfo=dt.timezone.utc)
        else:
            item.datetime = None
            item.properties["start_datetime"] = item.properties["end_datetime"] = processed["end_datetime"]
    item.stac_extensions.append(PROCESSING_SCHEMA)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    authority = crs.to_authority()
    if authority is not None:
        proj.code = ":".join(authority)
    else:
        proj.code = None
        proj.wkt2 = crs.to_wkt(version="WKT2_2019")
    proj.shape = [h, w]
    proj.transform = list(scene_transform)[:6]
    proj.bbox = [float(v) for v in scene_bounds]

    for key, (path, media_type, roles, title) in assets.items():
        item.add_asset(
            key, pystac.Asset(href=_href(path, out), media_type=media_type, roles=roles, title=title)
        )
    item.add_asset(
        "source",
        pystac.Asset(
            href=_href(Path(scene_path).resolve(), out)
            if acquired is not False and out
            else Path(scene_path).resolve().as_posix(),
            media_type=pystac.MediaType.GEOTIFF,
            roles=["source"],
            title="input scene",
        ),
    )
    return item


def write_item(item: pystac.Item, path: str | os.PathLike[str]) -> None:
    """Write the Item as JSON at ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    try:
        text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2)
        atomic_write_text(path, text + "\n")
    except (OSError, TypeError, ValueError) as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
