"""Training labels on an image grid: polygons rasterized and reprojected, label rasters, bad input."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.errors import LabelError
from geoseg.io.chips import IGNORE_INDEX
from geoseg.io.labels import read_labels
from geoseg.io.raster import open_scene
from tests.conftest import ATLANTA_BUILDINGS, ATLANTA_PAN, KAMPALA, KAMPALA_BUILDINGS, S2_LULC, S2_SCENE

BUILDINGS = ["background", "building"]


def test_polygons_burn_their_area_onto_the_grid():
    grid = open_scene(ATLANTA_PAN).geobox
    mask = read_labels(ATLANTA_BUILDINGS, grid, BUILDINGS, background="background")
    assert mask.shape == (900, 900) and set(np.unique(mask)) == {0, 1}
    polys = gpd.read_file(ATLANTA_BUILDINGS).to_crs(grid.crs.to_wkt())
    pixel_area = abs(grid.affine.a * grid.affine.e)
    burned = (mask == 1).sum() * pixel_area
    assert burned == pytest.approx(polys.union_all().area, rel=0.03)


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    grid = open_scene(KAMPALA).geobox
    native = read_labels(KAMPALA_BUILDINGS, grid, BUILDINGS, background="background")
    wgs84 = tmp_path / "buildings_4326.gpkg"
    gpd.read_file(KAMPALA_BUILDINGS).to_crs(4326).to_file(wgs84, engine="pyogrio")
    moved = read_labels(wgs84, grid, BUILDINGS, background="background")
    assert (native == 1).sum() > 100_000
    assert (moved == native).mean() > 0.999


def test_class_names_and_ids_from_a_field_and_unlabelled_pixels_ignored():
    grid = open_scene(S2_SCENE).geobox
    classes = ["artificial surface", "cultivated land", "forest", "grassland", "schrubland"]
    mask = read_labels(S2_LULC, grid, classes, class_field="LULC_NAME")
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
    # Forest is the largest class of this patch (7601 of 10100 pixels in the eo-learn reference raster).
    counts = np.bincount(mask[mask != IGNORE_INDEX], minlength=5)
    assert counts.argmax() == classes.index("forest")


def test_label_raster_on_another_grid_is_reprojected(tmp_path):
    grid = open_scene(ATLANTA_PAN).geobox
    polys = read_labels(ATLANTA_BUILDINGS, grid, BUILDINGS, background="background")
    # The same labels as a raster of class ids (1 background, 2 building) at twice the pixel size.
    coarse = polys[::2, ::2].astype(np.uint8) + 1
    path = tmp_path / "labels.tif"
    profile = dict(driver="GTiff", width=450, height=450, count=1, dtype="uint8", crs=grid.crs.to_wkt())
    with rasterio.open(path, "w", transform=grid.affine @ Affine.scale(2), nodata=0, **profile) as dst:
        dst.write(coarse, 1)
    back = read_labels(path, grid, BUILDINGS)
    assert back.shape == (900, 900)
    assert (back == polys).mean() > 0.97


def _write(frame: gpd.GeoDataFrame, path):
    frame.to_file(path, engine="pyogrio")
    return path


def test_bad_labels_name_the_file_and_the_problem(tmp_path):
    grid = open_scene(ATLANTA_PAN).geobox
    frame = gpd.read_file(ATLANTA_BUILDINGS)
    cases = {
        "no features": _write(frame.iloc[:0], tmp_path / "empty.gpkg"),
        "overlaps the image": _write(frame.set_geometry(frame.translate(50_000, 0)), tmp_path / "far.gpkg"),
        "no CRS": _write(frame.set_crs(None, allow_override=True), tmp_path / "nocrs.gpkg"),
        "unknown class value": _write(frame.assign(kind="swimming pool"), tmp_path / "kinds.gpkg"),
    }
    for problem, path in cases.items():
        with pytest.raises(LabelError, match=problem) as info:
            read_labels(
                path,
                grid,
                BUILDINGS,
                class_field="kind" if "kinds" in path.name else None,
                background="background",
            )
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    fractional = tmp_path / "fractional.tif"
    profile = dict(driver="GTiff", width=10, height=10, count=1, dtype="float32", crs=grid.crs.to_wkt())
    with rasterio.open(fractional, "w", transform=grid.affine, **profile) as dst:
        dst.write(np.full((1, 10, 10), 1.5, np.float32))
    with pytest.raises(LabelError, match="integer class ids"):
        read_labels(fractional, grid, BUILDINGS)
