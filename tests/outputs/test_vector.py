"""GeoPackage layers written with pyogrio, with QGIS default styles embedded in ``layer_styles``."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from geoseg.errors import OutputError
from geoseg.outputs.gpkg import write_layer, write_layer_styles
from geoseg.outputs.styles import categorized_polygon_qml, outline_polygon_qml
from geoseg.outputs.vectorize import polygons_to_frame, vectorize_block

from .conftest import ALBERS, KAMPALA_BUILDINGS, LULC_COLORS, LULC_NAMES, ClassRaster, quantize


def landcover_frame(r: ClassRaster, names: dict[int, str]) -> gpd.GeoDataFrame:
    h, w = r.labels.shape
    bp = vectorize_block(
        r.labels,
        r.transform,
        nodata=r.nodata,
        block_row_off=0,
        block_col_off=0,
        scene_height=h,
        scene_width=w,
    )
    return polygons_to_frame(bp.interior + bp.seam, names, r.crs)


def lulc_qml() -> str:
    return categorized_polygon_qml("class_id", [(k, LULC_NAMES[k], LULC_COLORS[k]) for k in LULC_NAMES])


@pytest.fixture()
def gpkg(tmp_path, lulc: ClassRaster):
    path = tmp_path / "geoseg.gpkg"
    landcover = landcover_frame(lulc, LULC_NAMES)
    buildings = gpd.read_file(KAMPALA_BUILDINGS, engine="pyogrio")
    buildings = gpd.GeoDataFrame(
        {"id": np.arange(1, len(buildings) + 1, dtype=np.int32), "score": np.float32(1.0)},
        geometry=buildings.geometry.values,
        crs=buildings.crs,
    )
    write_layer(landcover, path, "landcover", style_qml=lulc_qml(), style_name="geoseg classes")
    write_layer(buildings, path, "buildings", style_qml=outline_polygon_qml("#ff00ff"))
    return path, landcover, buildings


def test_two_layers_with_styles(gpkg) -> None:
    path, landcover, buildings = gpkg
    names = {name: gtype for name, gtype in pyogrio.list_layers(path)}
    assert names["landcover"] == "MultiPolygon" and names["buildings"] == "MultiPolygon"
    assert "layer_styles" in names
    for layer, frame in (("landcover", landcover), ("buildings", buildings)):
        back = gpd.read_file(path, layer=layer, engine="pyogrio")
        assert back.crs.equals(frame.crs)
        assert len(back) == len(frame)
        assert back.geometry.is_valid.all()
        assert (back.geometry.geom_type == "MultiPolygon").all()
        assert shapely.equals(back.geometry.values, frame.geometry.values).all()
    back = gpd.read_file(path, layer="landcover", engine="pyogrio")
    assert back["class_id"].tolist() == landcover["class_id"].tolist()
    assert np.allclose(back["area_m2"], landcover["area_m2"])

    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, useAsDefault, f_table_schema, styleQML "
            "FROM layer_styles ORDER BY f_table_name"
        ).fetchall()
        assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
            ("buildings", "geom", "buildings", 1, ""),
            ("landcover", "geom", "geoseg classes", 1, ""),
        ]
        assert 'type="categorizedSymbol"' in rows[1][5]
        contents = con.execute(
            "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchone()
        assert contents == ("attributes",)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"rtree_landcover_geom", "rtree_buildings_geom"} <= tables
        update_time = con.execute("SELECT update_time FROM layer_styles").fetchone()[0]
        assert "T" in update_time and update_time.endswith("Z")  # GeoPackage datetime format
    finally:
        con.close()
    styles = pyogrio.read_dataframe(path, layer="layer_styles")  # GDAL sees a regular table
    assert set(styles["f_table_name"]) == {"landcover", "buildings"}


def test_restyle_and_rewrite_keep_one_default(gpkg, lulc: ClassRaster) -> None:
    path, landcover, _ = gpkg
    write_layer_styles(path, "landcover", lulc_qml(), "geoseg classes")  # same name: replaced
    write_layer_styles(path, "landcover", lulc_qml(), "alternative")  # new default
    write_layer(landcover.iloc[:5], path, "landcover")  # replaced layer, other layers and styles kept
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT styleName, useAsDefault FROM layer_styles WHERE f_table_name = 'landcover' ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("geoseg classes", 0), ("alternative", 1)]
    assert pyogrio.read_info(path, layer="landcover")["features"] == 5
    assert pyogrio.read_info(path, layer="buildings")["features"] > 0


def test_empty_layer_and_custom_crs(tmp_path) -> None:
    with rasterio.open(ALBERS) as src:
        band = src.read(1, window=rasterio.windows.Window(0, 0, 200, 200))
        r = ClassRaster(
            quantize(band, band != src.nodata, n=3, smooth=2),
            src.window_transform(rasterio.windows.Window(0, 0, 200, 200)),
            src.crs,
            0,
        )
    assert r.crs.to_epsg() is None  # custom Albers, no EPSG code
    frame = landcover_frame(r, {1: "low", 2: "mid", 3: "high"})
    path = tmp_path / "out.gpkg"
    write_layer(frame, path, "landcover", style_qml=lulc_qml())
    write_layer(frame.iloc[:0], path, "empty", style_qml=lulc_qml())
    back = gpd.read_file(path, layer="landcover", engine="pyogrio")
    assert back.crs.equals(frame.crs)
    assert shapely.equals(back.geometry.values, frame.geometry.values).all()
    info = pyogrio.read_info(path, layer="empty")
    assert info["features"] == 0 and info["geometry_type"] == "MultiPolygon"
    assert list(info["fields"]) == ["class_id", "class_name", "area_m2"]
    assert gpd.read_file(path, layer="empty", engine="pyogrio").crs.equals(frame.crs)


def test_invalid_input_rejected(tmp_path) -> None:
    mixed = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1), shapely.Point(0, 0)], crs="EPSG:32633")
    with pytest.raises(OutputError, match="one kind of geometry"):
        write_layer(mixed, tmp_path / "a.gpkg", "mixed")
    with pytest.raises(OutputError, match="no CRS"):
        write_layer(gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)]), tmp_path / "a.gpkg", "nocrs")
    write_layer(
        gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32633"), tmp_path / "a.gpkg", "x"
    )
    with pytest.raises(OutputError, match=r"has no layer 'missing'"):
        write_layer_styles(tmp_path / "a.gpkg", "missing", lulc_qml(), "s")


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL command-line tools not installed")
def test_ogrinfo_reads_the_geopackage(gpkg) -> None:
    path, landcover, _ = gpkg
    res = subprocess.run(
        ["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr  # no warning, e.g. about field widths or the GPKG version
    assert "Layer name: landcover" in res.stdout and "Layer name: layer_styles" in res.stdout
    assert f"Feature Count: {len(landcover)}" in res.stdout
