"""The run manifest: a STAC Item with scene footprint, projection, outputs, model and software versions."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import pytest
import rasterio

from geoseg.outputs.stac import build_run_item, write_item

from .conftest import ALBERS, KAMPALA


def scene_kwargs(path: Path) -> dict:
    with rasterio.open(path) as src:
        return {
            "scene_path": path,
            "scene_crs": src.crs,
            "scene_bounds": tuple(src.bounds),
            "scene_shape": (src.height, src.width),
            "scene_transform": src.transform,
        }


def build(path: Path, out: Path) -> pystac.Item:
    return build_run_item(
        item_id="kampala-landcover",
        assets={
            "landcover": (
                out / "landcover.tif",
                "image/tiff; application=geotiff; profile=cloud-optimized",
                ["data", "classification"],
                "Land cover",
            ),
            "vectors": ("./geoseg.gpkg", "application/geopackage+sqlite3", ["data"], "Polygons"),
        },
        parameters={"tile": 512, "overlap": 64, "out": out, "bands": (1, 2, 3), "nan": float("nan")},
        model={
            "name": "landcover_rgb",
            "sha256": "ab" * 32,
            "path": Path("/models/m.pt"),
            "metadata": {"k": 1},
        },
        timing={"predict_s": 1.25, "total_s": 3.5},
        started=dt.datetime(2024, 5, 1, 10, 0, 0),
        finished=dt.datetime(2024, 5, 1, 12, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        **scene_kwargs(path),
    )


def test_item_round_trip(tmp_path) -> None:
    item = build(KAMPALA, tmp_path)
    path = tmp_path / "run.json"
    write_item(item, path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # atomic write leaves no temp file
    raw = json.loads(path.read_text())
    assert raw["type"] == "Feature" and raw["stac_version"] == pystac.get_stac_version()
    back = pystac.Item.from_file(str(path))
    assert back.id == "kampala-landcover"
    assert back.datetime == dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.timezone.utc)  # finished, in UTC
    assert raw["properties"]["datetime"] == "2024-05-01T10:30:00Z"
    west, south, east, north = back.bbox
    assert 32.58 < west < east < 32.60 and 0.34 < south < north < 0.36  # Kampala, ~32.59E 0.35N
    assert back.geometry["type"] == "Polygon"
    props = back.properties
    assert props["proj:code"] == "EPSG:3857" and props["proj:shape"] == [2048, 2048]
    with rasterio.open(KAMPALA) as src:
        assert props["proj:transform"] == pytest.approx(list(src.transform)[:6])
    assert props["geoseg:parameters"]["out"] == str(tmp_path) and props["geoseg:parameters"]["nan"] is None
    assert props["geoseg:parameters"]["bands"] == [1, 2, 3]
    assert props["geoseg:model"]["sha256"] == "ab" * 32 and props["geoseg:model"]["path"] == "/models/m.pt"
    assert props["geoseg:timing"]["total_s"] == 3.5
    versions = props["geoseg:versions"]
    assert {"python", "numpy", "rasterio", "GDAL"} <= versions.keys()
    assert versions["GDAL"] == rasterio.__gdal_version__
    assert props["processing:software"]["rasterio"] == versions["rasterio"]
    assert any("projection" in e for e in back.stac_extensions)
    assert any("processing" in e for e in back.stac_extensions)
    assets = raw["assets"]
    assert assets["landcover"]["href"] == "./landcover.tif"
    assert assets["vectors"]["href"] == "./geoseg.gpkg"
    assert assets["landcover"]["roles"] == ["data", "classification"]
    assert (
        assets["source"]["roles"] == ["source"] and assets["source"]["href"] == KAMPALA.resolve().as_posix()
    )
    assert back.assets["landcover"].get_absolute_href() == (tmp_path / "landcover.tif").as_posix()


def test_custom_crs_gets_wkt2(tmp_path) -> None:
    item = build(ALBERS, tmp_path)
    props = item.to_dict()["properties"]
    assert props.get("proj:code") is None
    assert props["proj:wkt2"].startswith(("PROJCRS", "BOUNDCRS"))
    west, south, east, north = item.bbox
    assert -104.3 < west < east < -103.9 and 41.7 < south < north < 42.0  # Wyoming-Nebraska border
    # curved edges in lon/lat are kept (densified footprint), not just the four corners
    assert len(item.geometry["coordinates"][0]) > 5
