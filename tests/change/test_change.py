"""``geoseg change`` on real imagery: NAIP dates on offset grids, a date against itself shifted by real
offsets, a constructed pair with known truth, building change, and one-line refusals of bad input."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pystac
import pytest
import rasterio
import shapely
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize, shapes
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from geoseg.change import DEFAULT_CHANGE_MMU_M2, ChangeConfig, run_change
from geoseg.change.runs import ClassDef, write_run_folder

from ..conftest import KAMPALA, KAMPALA_BUILDINGS, crop_geotiff, needs_qgis, open_in_qgis
from .conftest import CLASSES, NAIP_2009, NAIP_2020, baseline_run, classify, shifted_copy

QUIET = {"progress": False}


def change(before: Path, after: Path, out: Path, **kw):
    return run_change(ChangeConfig(before=before, after=after, out=out, **QUIET | kw), notify=lambda m: None)


def geoseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoseg", *args], capture_output=True, text=True, timeout=300
    )


def _on_grid(src_path: Path, like: rasterio.io.DatasetReader) -> np.ndarray:
    """A class raster put on another raster's grid by nearest neighbour (independently of geoseg)."""
    out = np.zeros(like.shape, np.uint8)
    with rasterio.open(src_path) as src:
        reproject(
            src.read(1),
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=like.transform,
            dst_crs=like.crs,
            resampling=Resampling.nearest,
            src_nodata=0,
            dst_nodata=0,
        )
    return out


# ------------------------------------------------------------------------------------------ NAIP pair


@pytest.fixture(scope="module")
def naip_change(naip_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("naip_change") / "change"
    return out, change(*naip_runs, out)


def test_naip_pair_on_one_grid(naip_change, naip_runs):
    out, s = naip_change
    assert sorted(p.name for p in out.iterdir()) == [
        "change.gpkg",
        "change.json",
        "change.tif",
        "change.tif.aux.xml",
        "transitions.csv",
    ]
    with rasterio.open(NAIP_2009) as b, rasterio.open(NAIP_2020) as a, rasterio.open(out / "change.tif") as c:
        assert b.transform != a.transform  # the dates' grids are 1 m apart
        assert s.grid == "before"  # equal 5 m pixels: the earlier date's grid
        assert c.crs == b.crs and (c.transform.a, c.transform.e) == (b.transform.a, b.transform.e)
        # the grid is the before grid, cut to the overlap: its origin is on a before pixel corner
        col, row = ~b.transform @ (c.transform.c, c.transform.f)
        assert col == int(col) and row == int(row)
        assert c.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        code = c.read(1)
        before = _on_grid(naip_runs[0] / "landcover.tif", c)
        after = _on_grid(naip_runs[1] / "landcover.tif", c)
        overlap = shapely.box(*b.bounds).intersection(shapely.box(*a.bounds))
    valid = (before > 0) & (after > 0)
    # transitions table: every compared pixel once; sums to the compared area = the overlap of the footprints
    table = pyogrio.read_dataframe(out / "change.gpkg", layer="transitions")
    assert table["area_m2"].sum() == pytest.approx(valid.sum() * 25.0)
    assert s.compared_m2 == pytest.approx(table["area_m2"].sum())
    assert abs(s.compared_m2 - overlap.area) <= overlap.length * 5.0  # within a pixel along the edge
    assert s.overlap_m2 == pytest.approx(overlap.area)
    assert table["percent"].sum() == pytest.approx(100.0)
    csv = pd.read_csv(out / "transitions.csv")
    assert np.allclose(csv["area_m2"], table["area_m2"]) and list(csv["from_class"]) == list(
        table["from_class"]
    )
    # change.tif agrees with the two dates: no change code where they agree, and the right code where kept
    assert not code[valid & (before == after)].any() and not code[~valid].any()
    kept = code > 0
    assert np.array_equal(code[kept], 1 + (before[kept] - 1) * 5 + (after[kept] - 1))
    # ... and with the polygons; each polygon is at least the MMU
    lc = pyogrio.read_dataframe(out / "change.gpkg", layer="landcover_change")
    assert len(lc) == s.regions > 0 and lc["area_m2"].min() >= DEFAULT_CHANGE_MMU_M2
    assert set(lc["date_before"]) == {"2009-08-18"} and set(lc["date_after"]) == {"2020-08-31"}
    with rasterio.open(out / "change.tif") as c:
        burnt = rasterize(zip(lc.geometry, lc["code"], strict=True), out_shape=c.shape, transform=c.transform)
    assert np.array_equal(burnt, code)
    assert (lc["from_class"] != lc["to_class"]).all()
    net = pyogrio.read_dataframe(out / "change.gpkg", layer="class_net_change")
    assert net["net_change_m2"].sum() == pytest.approx(0.0, abs=1e-6)


def test_naip_change_metadata(naip_change, naip_runs):
    out, _s = naip_change
    item = pystac.Item.from_file(str(out / "change.json"))
    assert item.datetime is None
    assert item.properties["start_datetime"].startswith("2009-08-18")
    assert item.properties["end_datetime"].startswith("2020-08-31")
    runs = [Path(out, link.href).resolve() for link in item.links if link.rel == "derived_from"]
    assert runs == [(r / "run.json").resolve() for r in naip_runs]
    mis = item.properties["geoseg:misregistration"]
    assert mis["shift_m"] < 10 and len(mis["shift_px"]) == 2
    assert item.properties["geoseg:parameters"]["mmu_m2"] == DEFAULT_CHANGE_MMU_M2
    assert item.properties["geoseg:grid"]["shape"] == list(rasterio.open(out / "change.tif").shape)
    # transition names where GIS software looks for them: GDAL category names from the PAM sidecar
    cats = [c.text or "" for c in ET.parse(out / "change.tif.aux.xml").iter("Category")]
    assert cats[0] == "no change" and cats[1 + 1 * 5 + 4] == "land → water"
    if shutil.which("gdalinfo"):
        info = subprocess.run(["gdalinfo", str(out / "change.tif")], capture_output=True, text=True).stdout
        assert "land → water" in info and "Color Table" in info
    styles = pyogrio.read_dataframe(out / "change.gpkg", layer="layer_styles")
    assert "landcover_change" in set(styles["f_table_name"])


# ------------------------------------------------------------------------------------ shifted dates


@pytest.mark.parametrize("dx, dy", [(1.0, 1.0), (3.0, -2.0)])
def test_a_date_against_itself_shifted(tmp_path, naip_runs, dx, dy):
    """The 2009 pixels georeferenced 1-3 m away (1 m: the real offset between the 2009 and 2020
    grids): before the MMU misregistration makes edge noise; after it almost none is left."""
    moved = shifted_copy(NAIP_2009, tmp_path / "moved_20090819.tif", dx, dy)
    after = baseline_run(moved, tmp_path / "moved", dt.date(2009, 8, 19))
    raw = change(naip_runs[0], after, tmp_path / "raw", mmu_m2=0)
    mmu = change(naip_runs[0], after, tmp_path / "mmu")
    raw_frac, mmu_frac = raw.changed_m2 / raw.compared_m2, mmu.changed_m2 / mmu.compared_m2
    assert mmu_frac <= 0.02  # measured 0.0 % (1 m) and 1.4 % (3 m, -2 m)
    assert mmu_frac <= raw_frac / 5 or raw_frac == 0
    assert mmu.misregistration_m == pytest.approx(math.hypot(dx, dy), abs=0.5)


# ---------------------------------------------------------------------------------- constructed pair


def _disk(h: int, w: int, r0: int, c0: int, radius: float) -> np.ndarray:
    rr, cc = np.ogrid[:h, :w]
    return (rr - r0) ** 2 + (cc - c0) ** 2 <= radius**2


def test_constructed_pair_finds_exactly_the_pasted_regions(tmp_path, naip_runs):
    """Real lake pixels pasted as three discs into dry land of a copy of the 2009 scene (georeferenced with
    the real 1 m offset of the 2020 grid): the change polygons are those discs and nothing else."""
    with rasterio.open(NAIP_2009) as src:
        img = src.read()
    cls = classify(NAIP_2009)
    h, w = cls.shape
    water = cls == 5
    dry = cls != 5
    radius = 9
    # a lake interior to copy from, and three dry places far from any water to paste into
    lake = ndimage.binary_erosion(water, iterations=radius + 1)
    src_r, src_c = np.argwhere(lake)[len(np.argwhere(lake)) // 2]
    far = ndimage.binary_erosion(dry & (cls > 0), iterations=radius + 3)
    spots = []
    for r, c in np.argwhere(far)[:: max(1, int(far.sum()) // 400)]:
        if all(abs(r - r2) > 4 * radius or abs(c - c2) > 4 * radius for r2, c2 in spots):
            spots.append((int(r), int(c)))
        if len(spots) == 3:
            break
    assert len(spots) == 3
    pasted = img.copy()
    truth = []
    for r, c in spots:
        m = _disk(h, w, r, c, radius)
        patch = np.roll(np.roll(img, r - src_r, axis=1), c - src_c, axis=2)  # lake centred on (r, c)
        pasted[:, m] = patch[:, m]
        truth.append(m)
    after_scene = shifted_copy(NAIP_2009, tmp_path / "pasted_20100818.tif", 1.0, 1.0, data=pasted)
    after = baseline_run(after_scene, tmp_path / "pasted", dt.date(2010, 8, 18))
    s = change(naip_runs[0], after, tmp_path / "change")
    lc = pyogrio.read_dataframe(tmp_path / "change" / "change.gpkg", layer="landcover_change")
    assert set(lc["to_class"]) == {"water"}
    regions = shapely.get_parts(shapely.unary_union(lc.geometry.to_numpy()))
    with rasterio.open(NAIP_2009) as src:
        t = src.transform
    truth_polys = [
        shapely.geometry.shape(g) for m in truth for g, v in shapes(m.astype(np.uint8), transform=t) if v
    ]
    assert len(regions) == len(truth_polys) == 3
    for tp in truth_polys:
        best = max(regions, key=lambda g: g.intersection(tp).area)
        iou = best.intersection(tp).area / best.union(tp).area
        assert iou >= 0.9, iou
    assert s.changed_m2 == pytest.approx(sum(m.sum() for m in truth) * 25.0, rel=0.1)


# ----------------------------------------------------------------------------------- building change


@pytest.fixture(scope="module")
def kampala_buildings_grid(tmp_path_factory):
    """A 1024² window of the Kampala scene and its labelled footprints."""
    scene = crop_geotiff(KAMPALA, tmp_path_factory.mktemp("kampala") / "kampala_1024.tif", 0, 0, 1024, 1024)
    with rasterio.open(scene) as src:
        geobox = GeoBox.from_rio(src)
        fp = gpd.read_file(KAMPALA_BUILDINGS).to_crs(src.crs)
        fp = fp[fp.intersects(shapely.box(*src.bounds))].reset_index(drop=True)
    fp = gpd.GeoDataFrame({"id": np.arange(1, len(fp) + 1)}, geometry=fp.geometry.to_numpy(), crs=fp.crs)
    return scene, geobox, fp


def _building_run(out, scene, geobox, fp, date):
    ids = rasterize(
        zip(fp.geometry, fp["id"], strict=True),
        out_shape=(1024, 1024),
        transform=geobox.affine,
        dtype="uint32",
    )
    classes = [ClassDef(1, "background", "#000000"), ClassDef(2, "building", "#E3342F")]
    return write_run_folder(
        out,
        array=ids,
        geobox=geobox,
        classes=classes,
        date=date,
        model_id="labels",
        task="buildings",
        source=scene,
        buildings=fp,
    )


def test_removed_buildings_are_exactly_those(tmp_path, kampala_buildings_grid):
    scene, geobox, fp = kampala_buildings_grid
    assert len(fp) >= 10
    with rasterio.open(scene) as src:
        inside = fp["id"][fp.within(shapely.box(*src.bounds))].to_numpy()
    removed = inside[[1, len(inside) // 2, len(inside) - 2]].tolist()
    grown = int(inside[3])
    later = fp[~fp["id"].isin(removed)].copy()
    # one building rebuilt twice as big (to the east); everything else unchanged, with new ids
    g = later.geometry[later["id"] == grown].iloc[0]
    later.loc[later["id"] == grown, "geometry"] = shapely.affinity.scale(g, 2.0, 1.0, origin=(g.bounds[0], 0))
    later["id"] = np.arange(101, 101 + len(later))
    b = _building_run(tmp_path / "b", scene, geobox, fp, dt.date(2021, 1, 1))
    a = _building_run(tmp_path / "a", scene, geobox, later.reset_index(drop=True), dt.date(2022, 1, 1))
    s = change(b, a, tmp_path / "change", mmu_m2=5.0)
    gpkg = tmp_path / "change" / "change.gpkg"
    gone = pyogrio.read_dataframe(gpkg, layer="buildings_removed")
    assert sorted(gone["id_before"]) == sorted(removed)
    assert len(pyogrio.read_dataframe(gpkg, layer="buildings_new")) == 0
    changed = pyogrio.read_dataframe(gpkg, layer="buildings_changed")
    assert changed["id_before"].tolist() == [grown]
    assert changed["area_after_m2"].iat[0] > 1.5 * changed["area_before_m2"].iat[0]
    assert s.buildings["removed"] == 3 and s.buildings["unchanged"] == s.buildings["before"] - 4
    lc = pyogrio.read_dataframe(gpkg, layer="landcover_change")
    # the class view of the same runs: removed footprints are building -> background regions
    assert set(zip(lc["from_class"], lc["to_class"], strict=True)) == {
        ("building", "background"),
        ("background", "building"),
    }
    gone_lc = shapely.unary_union(lc[lc["to_class"] == "background"].geometry.to_numpy())
    for g, area in zip(gone.geometry, gone["area_before_m2"], strict=True):
        if area >= 5.0:  # above the MMU
            assert gone_lc.intersection(g).area >= 0.95 * g.area


def test_real_geoseg_run_outputs_compare(tmp_path, dask_cluster):
    """Two real ``geoseg run`` outputs (bundled building model, ``--date``, ``--confidence``) of one crop:
    distinct STAC ids, acquisition dates in run.json, and no change between them."""
    from geoseg.config import ClusterConfig, RunConfig
    from geoseg.run.job import run_scene

    from ..conftest import BUILDINGS_MODEL

    scene = crop_geotiff(KAMPALA, tmp_path / "k.tif", 400, 400, 768, 768)
    outs = []
    for day in (dt.date(2021, 3, 1), dt.date(2023, 3, 1)):
        out = tmp_path / f"run{day.year}"
        cfg = RunConfig(
            scene=scene,
            out=out,
            model=BUILDINGS_MODEL,
            date=day,
            confidence=True,
            progress=False,
            cluster=ClusterConfig(scheduler=dask_cluster.scheduler_address),
        )
        run_scene(cfg, notify=lambda m: None)
        item = json.loads((out / "run.json").read_text())
        assert item["properties"]["datetime"] == f"{day}T00:00:00Z"
        assert item["assets"]["source"]["href"].startswith("../")
        with rasterio.open(out / "confidence.tif") as c:
            assert c.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and c.read(1).max() > 200
        outs.append(out)
    ids = {json.loads((o / "run.json").read_text())["id"] for o in outs}
    assert len(ids) == 2
    s = change(*outs, tmp_path / "change", min_confidence=0.5)
    assert s.changed_m2 == 0 and s.buildings["new"] == s.buildings["removed"] == s.buildings["changed"] == 0
    assert s.buildings["unchanged"] == s.buildings["before"] > 0
    assert s.misregistration_m == pytest.approx(0.0, abs=0.01)


# --------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_pairs(tmp_path_factory, naip_runs):
    d = tmp_path_factory.mktemp("bad")
    west = crop_geotiff(NAIP_2020, d / "west_20200831.tif", 0, 0, 200, 200)
    east = crop_geotiff(NAIP_2020, d / "east_20200831.tif", 0, 600, 200, 200)
    far = baseline_run(east, d / "east", dt.date(2020, 8, 31))
    near = baseline_run(west, d / "west", dt.date(2020, 8, 31))
    with rasterio.open(NAIP_2020) as src:
        geobox = GeoBox.from_rio(src)
    renamed = [ClassDef(c.id, c.name.upper(), c.color) for c in CLASSES]
    other = write_run_folder(
        d / "other",
        array=classify(NAIP_2020),
        geobox=geobox,
        classes=renamed,
        date=dt.date(2020, 8, 31),
        model_id="baseline:landcover",
        source=NAIP_2020,
    )
    undated = write_run_folder(
        d / "undated",
        array=classify(NAIP_2020),
        geobox=geobox,
        classes=CLASSES,
        date=None,
        model_id="baseline:landcover",
        source=NAIP_2020,
    )
    incomplete = d / "incomplete"
    shutil.copytree(naip_runs[1], incomplete)
    (incomplete / "landcover.tif").unlink()
    return {
        "no overlap": (near, far, "does not overlap"),
        "classes": (naip_runs[0], other, "classes"),
        "no date": (naip_runs[0], undated, "no acquisition date"),
        "incomplete": (naip_runs[0], incomplete, "incomplete run folder"),
        "no confidence": (naip_runs[0], naip_runs[1], "needs a confidence raster"),
    }


@pytest.mark.parametrize("case", ["no overlap", "classes", "no date", "incomplete", "no confidence"])
def test_bad_pairs_are_refused_in_one_line(tmp_path, bad_pairs, case):
    before, after, words = bad_pairs[case]
    out = tmp_path / "change"
    extra = ["--min-confidence", "0.5"] if case == "no confidence" else []
    res = geoseg("change", str(before), str(after), "--out", str(out), "--no-progress", *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a staging folder


def test_masked_pixels_are_not_compared(tmp_path, naip_runs, naip_change):
    """A per-date mask (e.g. clouds: nonzero = exclude) on its own grid removes exactly its pixels from
    the comparison: no change there, and the compared area shrinks by its area."""
    _, full = naip_change
    with rasterio.open(NAIP_2020) as src:
        profile = src.profile | {"count": 1, "dtype": "uint8", "nodata": None}
        mask = np.zeros(src.shape, np.uint8)
        mask[100:300, 200:500] = 1  # 200 x 300 pixels of the 2020 grid
        with rasterio.open(tmp_path / "clouds.tif", "w", **profile) as dst:
            dst.write(mask, 1)
        cloud = shapely.box(
            *rasterio.windows.bounds(rasterio.windows.Window(200, 100, 300, 200), src.transform)
        )
    s = change(*naip_runs, tmp_path / "masked", after_mask=tmp_path / "clouds.tif")
    assert full.compared_m2 - s.compared_m2 == pytest.approx(cloud.area, rel=0.02)
    lc = pyogrio.read_dataframe(tmp_path / "masked" / "change.gpkg", layer="landcover_change")
    assert lc.intersection(cloud.buffer(-5)).area.sum() == 0
    assert s.changed_m2 < full.changed_m2


@needs_qgis
def test_change_outputs_open_styled_in_qgis(naip_change, tmp_path):
    out, _ = naip_change
    infos, _png = open_in_qgis(out, tmp_path)
    raster = next(i for i in infos if i["layer"] == "change.tif")
    assert raster["valid"] and raster["renderer"] == "paletted"
    layer = next(i for i in infos if i["layer"] == "landcover_change")
    assert layer["styled"] and layer["renderer"] == "categorizedSymbol" and layer["features"] > 0
    tables = [i for i in infos if i.get("table")]
    assert {i["layer"] for i in tables} == {"transitions", "class_net_change"}
    assert all(i["styled"] and i["features"] > 0 for i in tables)


def test_scenes_are_run_first_with_the_same_model(tmp_path):
    """BEFORE/AFTER given as scenes: both run with the bundled model into ``<out>.runs/``, then compared."""
    from ..conftest import LANDCOVER_MODEL

    a = crop_geotiff(NAIP_2009, tmp_path / "m_4709963_se_14_1_20090818.tif", 200, 200, 160, 200)
    b = crop_geotiff(NAIP_2020, tmp_path / "m_4709963_se_14_1_20200831.tif", 200, 200, 160, 200)
    out = tmp_path / "chg"
    res = geoseg(
        "change",
        str(a),
        str(b),
        "--out",
        str(out),
        "--model",
        str(LANDCOVER_MODEL),
        "--bands",
        "1,2,3",
        "--no-resample",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    runs = sorted(p.name for p in (tmp_path / "chg.runs").iterdir())
    assert runs == [a.stem, b.stem]
    item = json.loads((out / "change.json").read_text())
    assert item["properties"]["geoseg:dates"] == {"before": "2009-08-18", "after": "2020-08-31"}
    assert (
        item["properties"]["geoseg:runs"]["before"]["model"]
        == item["properties"]["geoseg:runs"]["after"]["model"]
    )
    assert "m² changed of" in res.stdout


def test_dates_in_other_crs_and_resolution_are_aligned(tmp_path, naip_runs):
    """The 2009 classes warped (nearest) to Web Mercator at ~2.5 m: the comparison runs on that finer
    grid (the after date's), in its CRS, and a date against its own reprojection shows almost no change."""
    from rasterio.warp import calculate_default_transform

    with rasterio.open(naip_runs[0] / "landcover.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds, resolution=2.5 * 1.46
        )
        dst = np.zeros((height, width), np.uint8)
        reproject(
            src.read(1),
            dst,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs="EPSG:3857",
            resampling=Resampling.nearest,
            src_nodata=0,
            dst_nodata=0,
        )
    geobox = GeoBox((height, width), transform, "EPSG:3857")
    after = write_run_folder(
        tmp_path / "merc",
        array=dst,
        geobox=geobox,
        classes=CLASSES,
        date=dt.date(2009, 8, 19),
        model_id="baseline:landcover",
        source=NAIP_2009,
    )
    s = change(naip_runs[0], after, tmp_path / "change")
    assert s.grid == "after"
    with rasterio.open(tmp_path / "change" / "change.tif") as c:
        assert c.crs.to_epsg() == 3857 and c.transform.a == pytest.approx(transform.a)
    assert s.compared_m2 == pytest.approx(s.overlap_m2, rel=0.01)
    assert s.changed_m2 / s.compared_m2 < 0.01
    # the same comparison again: nothing to do; other parameters need --overwrite
    again = change(naip_runs[0], after, tmp_path / "change")
    assert again.skipped
    from geoseg.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        change(naip_runs[0], after, tmp_path / "change", mmu_m2=50.0)


def test_cloud_mask_time_series_picks_each_dates_band(tmp_path):
    """eo-learn's Sentinel-2 cloud mask series (68 bands described by timestamps, 1 = cloud) as both masks:
    the fully cloudy 2015-07-31 leaves nothing to compare, the clear 2015-08-30 everything."""
    from .conftest import S2_CLOUDS, s2_run

    clear, cloudy, clear2 = (s2_run(d, tmp_path / d) for d in ("2015-07-11", "2015-07-31", "2015-08-30"))
    masks = {"before_mask": S2_CLOUDS, "after_mask": S2_CLOUDS}
    notes: list[str] = []
    s = run_change(
        ChangeConfig(before=clear, after=cloudy, out=tmp_path / "c1", progress=False, **masks),
        notify=notes.append,
    )
    assert s.compared_m2 == 0 and s.changed_m2 == 0 and s.overlap_m2 > 1e6
    assert any("nothing was compared" in n for n in notes)
    unmasked = change(clear, cloudy, tmp_path / "c0")
    assert unmasked.compared_m2 == pytest.approx(s.overlap_m2, rel=0.01)
    s = change(clear, clear2, tmp_path / "c2", **masks)
    assert s.compared_m2 == pytest.approx(s.overlap_m2, rel=0.01)


def test_a_second_writer_of_one_change_folder_is_refused(tmp_path):
    """Two processes must not write one change folder: the second gets a one-line refusal."""
    from geoseg.change import ChangeConfig, run_change
    from geoseg.errors import OutputLockedError
    from geoseg.run.locking import output_lock

    out = tmp_path / "change"
    cfg = ChangeConfig(before=tmp_path / "a", after=tmp_path / "b", out=out)
    with output_lock(out, wait=False), pytest.raises(OutputLockedError):
        run_change(cfg, notify=lambda m: None)
    assert not out.exists()


def test_runs_of_another_class_scheme_compare_through_a_class_map(tmp_path, naip_runs):
    """A later date mapped by another model with its own class ids and names: refused as it is, compared
    through --class-map, and then the change equals that against the same classes."""
    from geoseg.change.errors import ChangeInputError

    before, after = naip_runs
    other = {c.name: ClassDef(100 + i, f"{c.name}_v2", c.color) for i, c in enumerate(CLASSES)}
    with rasterio.open(after / "landcover.tif") as src:
        ids = src.read(1)
        geobox = GeoBox.from_rio(src)
    recoded = np.zeros_like(ids)
    for c in CLASSES:
        recoded[ids == c.id] = other[c.name].id
    renamed = write_run_folder(
        tmp_path / "renamed", array=recoded, geobox=geobox, classes=list(other.values()),
        date=dt.date(2020, 8, 31), model_id="another-model", source=NAIP_2020,
    )  # fmt: skip
    quiet = {"notify": lambda m: None}
    with pytest.raises(ChangeInputError, match="--class-map"):
        run_change(ChangeConfig(before=before, after=renamed, out=tmp_path / "refused"), **quiet)
    partial = {f"{CLASSES[0].name}_v2": CLASSES[0].name}
    with pytest.raises(ChangeInputError, match=f"{CLASSES[1].name}_v2"):
        run_change(
            ChangeConfig(before=before, after=renamed, out=tmp_path / "partial", class_map=partial), **quiet
        )
    assert not (tmp_path / "refused").exists() and not (tmp_path / "partial").exists()
    mapping = {f"{c.name}_v2": c.name.upper() for c in CLASSES}  # names match case-insensitively
    mapped_cfg = ChangeConfig(before=before, after=renamed, out=tmp_path / "mapped", class_map=mapping)
    run_change(mapped_cfg, **quiet)
    run_change(ChangeConfig(before=before, after=after, out=tmp_path / "same"), **quiet)
    with rasterio.open(tmp_path / "mapped" / "change.tif") as a:
        mapped = a.read(1)
    with rasterio.open(tmp_path / "same" / "change.tif") as b:
        same = b.read(1)
    assert (same > 0).any() and np.array_equal(mapped, same)


def test_block_tasks_run_on_a_cluster_of_worker_processes(tmp_path, naip_runs, dask_cluster):
    """The comparison is a Dask graph of block tasks: on a real scheduler with worker processes (the run
    folders read by the workers) it gives what the default in-process worker gives, in blocks of 256."""
    from geoseg.config import ClusterConfig

    before, after = naip_runs
    quiet = {"notify": lambda m: None}
    remote = ClusterConfig(scheduler=dask_cluster.scheduler_address)
    run_change(ChangeConfig(before=before, after=after, out=tmp_path / "local", block=256), **quiet)
    summary = run_change(
        ChangeConfig(before=before, after=after, out=tmp_path / "remote", block=256, cluster=remote), **quiet
    )
    local_tif, remote_tif = tmp_path / "local" / "change.tif", summary.out / "change.tif"
    with rasterio.open(local_tif) as a, rasterio.open(remote_tif) as b:
        codes = a.read(1)
        assert np.array_equal(codes, b.read(1)) and (codes > 0).any()
    local = pyogrio.read_dataframe(tmp_path / "local" / "change.gpkg", layer="landcover_change")
    remote_df = pyogrio.read_dataframe(summary.out / "change.gpkg", layer="landcover_change")
    assert len(local) == len(remote_df) == summary.regions
    assert np.isclose(local.area_m2.sum(), remote_df.area_m2.sum())


def test_runs_of_both_products_report_land_cover_and_building_change(tmp_path, dask_cluster):
    """Two default ``geoseg run`` folders (land cover and buildings from one read) of one crop on two
    dates: one comparison reports both kinds of change, each product against its own."""
    from geoseg.config import ClusterConfig, RunConfig
    from geoseg.run.job import run_scene

    from ..conftest import BUILDINGS_MODEL, LANDCOVER_MODEL

    scene = crop_geotiff(KAMPALA, tmp_path / "k.tif", 400, 400, 768, 768)
    outs = []
    for day in (dt.date(2021, 3, 1), dt.date(2023, 3, 1)):
        cfg = RunConfig(
            scene=scene, out=tmp_path / f"run{day.year}", models=[LANDCOVER_MODEL, BUILDINGS_MODEL],
            date=day, device="cpu", progress=False,
            cluster=ClusterConfig(scheduler=dask_cluster.scheduler_address),
        )  # fmt: skip
        run_scene(cfg, notify=lambda m: None)
        outs.append(cfg.out)
    s = change(*outs, tmp_path / "change")
    layers = {name for name, _ in pyogrio.list_layers(tmp_path / "change" / "change.gpkg")}
    assert {"landcover_change", "transitions", "buildings_new", "buildings_removed"} <= layers
    assert s.changed_m2 == 0 and s.buildings["new"] == s.buildings["removed"] == 0
    assert s.buildings["unchanged"] == s.buildings["before"] > 0
    table = pd.read_csv(tmp_path / "change" / "transitions.csv")
    assert {"building", "water"} & set(table.iloc[:, 0])  # the land-cover classes, not background
