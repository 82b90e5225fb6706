"""Sample design and error-adjusted area estimates (Olofsson et al. 2014) on real class rasters.

The reference is the real 7-class strata map of Wake County, NC (Landsat, 28.5 m); the "map" is that
raster with a classifier's kinds of errors (omission and commission between classes, a class bleeding
over its boundaries), written as geoseg writes a land-cover COG. True areas are known from the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from geoseg.areas import (
    allocate,
    approximate_from_confusion,
    count_classes,
    design_sample,
    estimate_from_sample,
    open_class_map,
    sample_size,
    stratified_estimate,
    write_design,
)
from geoseg.areas.design import draw_ranks
from geoseg.outputs.cog import BlockCOGWriter
from tests.conftest import ROOT

NC_STRATA = ROOT / "data" / "training" / "nc_landsat7" / "strata.tif"
LULC = ROOT / "data" / "samples" / "eolearn_series" / "eolearn_lulc_mask.tif"
NEBRASKA = ROOT / "data" / "samples" / "landsat5_nebraska_wgs84_window.tif"
# the legend of GRASS's NC sample "landclass96", from which the strata raster comes
NAMES = {
    1: "developed",
    2: "agriculture",
    3: "herbaceous",
    4: "shrubland",
    5: "forest",
    6: "water",
    7: "sediment",
}
COLORS = {
    1: (0, 100, 0),
    2: (0, 150, 150),
    3: (150, 200, 50),
    4: (230, 200, 60),
    5: (200, 0, 0),
    6: (0, 0, 220),
    7: (150, 150, 150),
}


def geoseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoseg", *args], capture_output=True, text=True, timeout=120
    )


def _write_map(
    path: Path, labels: np.ndarray, transform: Affine, crs: CRS, names=NAMES, colors=COLORS
) -> Path:
    """A class raster as ``geoseg run`` writes ``landcover.tif``: COG, colour table, CLASS_NAMES tag."""
    with BlockCOGWriter(
        path,
        crs=crs,
        transform=transform,
        width=labels.shape[1],
        height=labels.shape[0],
        colormap=colors,
        class_names=names,
    ) as w:
        w.write(0, 0, labels)
    return path


def _degrade(ref: np.ndarray, seed: int = 7) -> np.ndarray:
    """A classifier's errors: agriculture (2) over-mapped into forest (5), a fifth of it missed, herbaceous
    (3) confused with developed (1) and shrubland (4), water (6) bleeding one pixel into the forest."""
    rng = np.random.default_rng(seed)
    out = ref.copy()
    u = rng.random(ref.shape)
    out[(ref == 5) & (u < 0.04)] = 2
    out[(ref == 2) & (u < 0.20)] = 5
    out[(ref == 3) & (u < 0.15)] = 1
    out[(ref == 1) & (u < 0.05)] = 3
    out[(ref == 3) & (u >= 0.15) & (u < 0.20)] = 4
    out[(ref == 4) & (u < 0.04)] = 3
    out[ndimage.binary_dilation(ref == 6) & (ref == 5)] = 6
    return out


@pytest.fixture(scope="module")
def nc(tmp_path_factory):
    """(reference labels, map path, map labels, transform, crs) on the real NC grid."""
    with rasterio.open(NC_STRATA) as src:
        a = src.read(1)
        ref = np.where(a == src.nodata, 0, a).astype(np.uint8)
        transform, crs = src.transform, src.crs
    labels = _degrade(ref)
    path = _write_map(tmp_path_factory.mktemp("maps") / "landcover.tif", labels, transform, crs)
    return ref, path, labels, transform, crs


def _true_area(ref: np.ndarray, transform: Affine) -> dict[int, float]:
    u, c = np.unique(ref[ref > 0], return_counts=True)
    return {int(k): float(n) * abs(transform.determinant) for k, n in zip(u, c, strict=True)}


# --- (a) the estimator -----------------------------------------------------------------------------------


def test_reproduces_olofsson_2014_worked_example():
    """Olofsson et al. (2014), section 5: 30 m Landsat map, 4 strata, 641 (n = 640 labelled) samples."""
    mapped_px = {
        1: 200_000,
        2: 150_000,
        3: 3_200_000,
        4: 6_450_000,
    }  # deforestation, gain, forest, non-forest
    counts = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]  # rows map, columns reference
    m = [i + 1 for i, row in enumerate(counts) for j, c in enumerate(row) for _ in range(c)]
    r = [j + 1 for i, row in enumerate(counts) for j, c in enumerate(row) for _ in range(c)]
    est = stratified_estimate({k: v * 900.0 for k, v in mapped_px.items()}, m, r)
    ha = est.area_m2 / 1e4
    ci = 1.96 * est.area_se_m2 / 1e4
    # published: 21,158 ± 6,158 ha; 11,686 ± 3,756; 285,770 ± 15,510; 581,386 ± 16,282
    np.testing.assert_allclose(ha, [21_158, 11_686, 285_770, 581_386], atol=0.5)
    np.testing.assert_allclose(ci, [6_158, 3_756, 15_510, 16_282], atol=0.5)
    np.testing.assert_allclose(est.user_accuracy, [0.88, 0.73, 0.93, 0.96], atol=0.005)
    np.testing.assert_allclose(1.96 * est.user_accuracy_se, [0.07, 0.10, 0.04, 0.02], atol=0.005)
    np.testing.assert_allclose(est.producer_accuracy, [0.75, 0.85, 0.93, 0.96], atol=0.005)
    np.testing.assert_allclose(1.96 * est.producer_accuracy_se, [0.21, 0.25, 0.03, 0.02], atol=0.005)
    assert round(est.overall_accuracy, 2) == 0.95 and round(1.96 * est.overall_accuracy_se, 2) == 0.02
    # eq. 13: expected user's accuracies 0.70, 0.60, 0.90, 0.95 and a target SE of 0.01 -> n = 641
    w = {k: v / 10_000_000 for k, v in mapped_px.items()}
    assert sample_size(w, {1: 0.7, 2: 0.6, 3: 0.9, 4: 0.95}, 0.01, 10_000_000) == 641


def _brute_force(strata_area: dict[int, float], m: np.ndarray, r: np.ndarray, k: int) -> dict[str, float]:
    """Stratified estimators written from indicator variables and per-stratum sample variances: area
    total and ratio (linearised) estimators, independent of the p_ij matrix formulation."""
    area = v_area = 0.0
    ys, xs, lin = {}, {}, {}
    for h, a_h in strata_area.items():
        ind = (r[m == h] == k).astype(float)
        area += a_h * ind.mean()
        v_area += a_h**2 * ind.var(ddof=1) / ind.size
        ys[h] = ((r[m == h] == k) & (m[m == h] == k)).astype(float)
        xs[h] = ind
    x_tot = sum(strata_area[h] * xs[h].mean() for h in strata_area)
    pa = sum(strata_area[h] * ys[h].mean() for h in strata_area) / x_tot
    for h in strata_area:
        d = ys[h] - pa * xs[h]
        lin[h] = strata_area[h] ** 2 * d.var(ddof=1) / d.size
    ua = (r[m == k] == k).mean()
    return {
        "area": area,
        "area_se": np.sqrt(v_area),
        "pa": pa,
        "pa_se": np.sqrt(sum(lin.values())) / x_tot,
        "ua": ua,
        "ua_se": np.sqrt(ua * (1 - ua) / ((m == k).sum() - 1)),
    }


def test_estimator_matches_brute_force_on_a_real_sample(nc):
    ref, path, _labels, _transform, _ = nc
    cmap = open_class_map(path)
    counts = count_classes(cmap)
    d = design_sample(cmap, n=300, seed=3, min_per_stratum=30)
    r = ref[d.row, d.col].astype(np.int64)
    est = stratified_estimate(counts.area_m2, d.map_class, r, NAMES)
    assert est.classes == sorted(NAMES)
    for i, k in enumerate(est.classes):
        bf = _brute_force(counts.area_m2, d.map_class, r, k)
        np.testing.assert_allclose(
            [
                est.area_m2[i],
                est.area_se_m2[i],
                est.producer_accuracy[i],
                est.producer_accuracy_se[i],
                est.user_accuracy[i],
                est.user_accuracy_se[i],
            ],
            [bf["area"], bf["area_se"], bf["pa"], bf["pa_se"], bf["ua"], bf["ua_se"]],
            rtol=1e-9,
            atol=1e-12,
        )
    assert est.proportions.sum() == pytest.approx(1.0)
    assert est.area_m2.sum() == pytest.approx(counts.total_area_m2)


def test_confidence_intervals_cover_the_true_area_95_percent_of_the_time(nc):
    """Monte Carlo: 300 stratified samples of the degraded map, labelled from the real reference.

    The intervals are Wald intervals: they hold where the sample sees each kind of error often enough;
    a class whose omissions hide in a sliver of a large stratum (expected < 1 sample unit there) is
    under-covered, since a sample that sees none of them gets a too-narrow interval. That is measured too
    (agriculture: 287 missed pixels in 0.27 % of the forest stratum, 0.3 expected sample units there).
    """
    ref, path, labels, transform, _ = nc
    counts = count_classes(open_class_map(path))
    true = _true_area(ref, transform)
    flat_map, flat_ref = labels.ravel(), ref.ravel()
    where = {k: np.flatnonzero(flat_map == k) for k in counts.classes}
    n_per = allocate(
        counts.pixels,
        {k: counts.area_m2[k] / counts.total_area_m2 for k in counts.classes},
        400,
        "olofsson",
        40,
    )
    classes = sorted(true)
    # expected sample units per (stratum, reference class) cell
    expected = np.array([[n_per[h] * np.mean(flat_ref[where[h]] == k) for k in classes] for h in classes])
    rare_cell = ((expected > 0) & (expected < 1)).any(0)  # usually unseen: P(none in the sample) > 37 %
    hits = np.zeros(len(classes))
    est_sum = np.zeros(len(classes))
    reps = 300
    for seed in range(reps):
        ranks = draw_ranks(counts.pixels, n_per, seed)
        pix = np.concatenate([where[k][ranks[k]] for k in sorted(ranks)])
        est = stratified_estimate(counts.area_m2, flat_map[pix], flat_ref[pix])
        assert est.classes == classes
        t = np.array([true[k] for k in classes])
        hits += np.abs(est.area_m2 - t) <= 1.96 * est.area_se_m2
        est_sum += est.area_m2
    coverage = hits / reps
    t = np.array([true[k] for k in classes])
    mapped = np.array([counts.area_m2[k] for k in classes])
    print("coverage", dict(zip(classes, coverage.round(3).tolist(), strict=True)), "rare cell", rare_cell)
    assert rare_cell.tolist() == [k == 2 for k in classes]  # agriculture missed in 0.27 % of the forest
    assert 0.92 <= coverage[~rare_cell].mean() <= 0.98, coverage
    assert coverage[~rare_cell].min() >= 0.90, coverage
    assert coverage[rare_cell].max() < coverage[~rare_cell].mean()  # the documented weakness
    # unbiased: mean estimates are ~10x closer to the truth than the mapped areas
    assert np.abs(mapped - t).max() > 10 * np.abs(est_sum / reps - t).max()


# --- (b) the sample design -------------------------------------------------------------------------------


def test_allocation_rules():
    pixels = {1: 100_000, 2: 2_000, 3: 50_000, 4: 30}
    w = {k: v / sum(pixels.values()) for k, v in pixels.items()}
    olof = allocate(pixels, w, 400, "olofsson", 50)
    assert olof[2] == 50 and olof[4] == 30  # rare stratum at the minimum; one with 30 pixels taken whole
    assert olof[1] + olof[3] == 400 - 100 and abs(olof[1] / olof[3] - 2.0) < 0.02
    prop = allocate(pixels, w, 400, "proportional", 5)
    assert prop[1] == round(400 * w[1]) and prop[2] == 5 and prop[4] == 5
    assert allocate(pixels, w, 400, "equal", 5) == {1: 100, 2: 100, 3: 100, 4: 30}


def test_sample_is_seeded_stratified_and_on_its_pixels(nc, tmp_path):
    _, path, labels, transform, crs = nc
    cmap = open_class_map(path)
    assert cmap.names == NAMES and cmap.colors[6] == COLORS[6]
    d1 = design_sample(cmap, n=350, seed=11, min_per_stratum=40)
    d2 = design_sample(cmap, n=350, seed=11, min_per_stratum=40, rows=7)  # 7-row strips: same sample
    d3 = design_sample(cmap, n=350, seed=12, min_per_stratum=40)
    assert np.array_equal(d1.row, d2.row) and np.array_equal(d1.col, d2.col)
    assert np.array_equal(d1.sample_id, d2.sample_id)
    assert not np.array_equal(d1.row, d3.row)
    # strata sizes honour the allocation; each point is a pixel of its stratum, no pixel twice
    expected = allocate(
        count_classes(cmap).pixels, {s.map_class: s.weight for s in d1.strata}, 350, "olofsson", 40
    )
    got = dict(zip(*np.unique(d1.map_class, return_counts=True), strict=True))
    assert {int(k): int(v) for k, v in got.items()} == expected == {s.map_class: s.n for s in d1.strata}
    assert np.array_equal(labels[d1.row, d1.col], d1.map_class)
    assert len({(r, c) for r, c in zip(d1.row, d1.col, strict=True)}) == d1.n
    # written as points at pixel centres with the analyst's fields, strata and design tables, a style
    out = write_design(d1, tmp_path / "samples.gpkg")
    pts = gpd.read_file(out, layer="samples")
    assert list(pts.columns) == ["sample_id", "map_class", "map_name", "ref_class", "comment", "geometry"]
    assert pts.crs == crs and (pts.geom_type == "Point").all() and pts["ref_class"].isna().all()
    assert sorted(pts["sample_id"]) == list(range(1, 351))
    col, row = ~transform @ (pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    np.testing.assert_allclose(col % 1, 0.5, atol=1e-6)
    np.testing.assert_allclose(row % 1, 0.5, atol=1e-6)
    with rasterio.open(path) as src:
        at = [v[0] for v in src.sample(zip(pts.geometry.x, pts.geometry.y, strict=True))]
    assert np.array_equal(at, pts["map_class"]) and (pts["map_name"] == pts["map_class"].map(NAMES)).all()
    strata = pyogrio.read_dataframe(out, layer="strata")
    assert strata["pixels"].sum() == (labels > 0).sum() and strata["weight"].sum() == pytest.approx(1)
    assert strata["area_m2"].sum() == pytest.approx((labels > 0).sum() * 28.5**2)
    design = pyogrio.read_dataframe(out, layer="design")
    assert dict(zip(design["key"], design["value"], strict=True))["seed"] == "11"
    import sqlite3

    with sqlite3.connect(out) as con:
        qml = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name='samples'").fetchone()[0]
    assert 'editWidget type="ValueMap"' in qml and 'name="6 water" value="6"' in qml
    ET.fromstring(qml.split("\n", 1)[1])  # well-formed after the DOCTYPE line


def test_geographic_map_areas_are_geodesic(tmp_path):
    """Nebraska window in EPSG:4326: pixel areas change with latitude; their sum is the footprint's area
    in an equal-area projection."""
    from pyproj import Transformer
    from shapely.geometry import box
    from shapely.ops import transform as shp_transform

    with rasterio.open(NEBRASKA) as src:
        band = src.read(1)
        labels = np.where(band > np.median(band), 2, 1).astype(np.uint8)
        t, crs, bounds = src.transform, src.crs, src.bounds
    cmap = open_class_map(
        _write_map(
            tmp_path / "geo.tif", labels, t, crs, {1: "dark", 2: "bright"}, {1: (0, 0, 0), 2: (255, 255, 255)}
        )
    )
    counts = count_classes(cmap, rows=50)
    to_ea = Transformer.from_crs("EPSG:4326", "ESRI:102003", always_xy=True).transform  # US Albers equal area
    expected = shp_transform(to_ea, box(*bounds).segmentize(0.001)).area
    assert counts.total_area_m2 == pytest.approx(expected, rel=2e-3)
    assert counts.pixels == {1: int((labels == 1).sum()), 2: int((labels == 2).sum())}


def test_class_names_from_tags_sidecar_or_option(tmp_path):
    lulc = open_class_map(LULC)  # eo-learn's "CLASSES" tag: "0=no data,1=cultivated land,..."
    assert lulc.names == {
        1: "cultivated land",
        2: "forest",
        3: "grassland",
        4: "shrubland",
        8: "artificial surface",
    }
    with rasterio.open(LULC) as src:
        prof, data = src.profile, src.read()
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **prof) as dst:
        dst.write(data)
    assert open_class_map(plain).name(2) == "class 2"
    (tmp_path / "plain.tif.aux.xml").write_text(
        "<PAMDataset><PAMRasterBand band='1'><GDALRasterAttributeTable tableType='thematic'>"
        "<FieldDefn index='0'><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>"
        "<FieldDefn index='1'><Name>Name</Name><Type>2</Type><Usage>2</Usage></FieldDefn>"
        "<Row index='0'><F>2</F><F>forest -&gt; built</F></Row><Row index='1'><F>8</F><F>built</F></Row>"
        "</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>"
    )
    assert open_class_map(plain).names == {2: "forest -> built", 8: "built"}
    assert open_class_map(plain, {2: "woods"}).name(2) == "woods"


# --- (c) end to end: areas from a sample labelled with the true classes ----------------------------------


def test_true_labels_give_areas_within_ci_while_mapped_areas_are_biased(nc, tmp_path):
    ref, path, _labels, transform, _ = nc
    samples = tmp_path / "samples.gpkg"
    res = geoseg(
        "sample", str(path), "--out", str(samples), "--n", "500", "--seed", "5", "--min-per-stratum", "50"
    )
    assert res.returncode == 0, res.stderr
    assert "500 sample points" in res.stdout
    pts = gpd.read_file(samples, layer="samples")
    col, row = ~transform @ (pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    truth = ref[row.astype(int), col.astype(int)]
    # the analyst types ids or names (any case)
    pts["ref_class"] = [NAMES[v].upper() if i % 3 == 0 else str(v) for i, v in enumerate(truth)]
    pts.to_file(samples, layer="samples", driver="GPKG")
    res = geoseg("areas", str(path), str(samples), "--out", str(tmp_path / "areas.json"))
    assert res.returncode == 0, res.stderr
    assert "overall accuracy" in res.stdout and "agriculture" in res.stdout
    report = json.loads((tmp_path / "areas.json").read_text())
    assert not report["approximation"] and report["inputs"]["design"]["seed"] == "5"
    assert report["inputs"]["n_labelled"] == 500
    true = _true_area(ref, transform)
    rows = {c["class"]: c for c in report["classes"]}
    for k, t in true.items():
        c = rows[k]
        assert c["area_ci95_low_m2"] <= t <= c["area_ci95_high_m2"], (k, c, t)
    # agriculture is mapped at ~3.7x its true area; the adjusted estimate removes most of that bias
    w = rows[2]
    assert w["mapped_area_m2"] > 3 * true[2]
    assert abs(w["mapped_area_m2"] - true[2]) > 5 * w["area_se_m2"]
    assert abs(w["area_m2"] - true[2]) < 0.3 * abs(w["mapped_area_m2"] - true[2])
    table = (tmp_path / "areas.csv").read_text().splitlines()
    assert table[0].startswith("class,name,mapped_area_m2") and len(table) == 1 + len(true)


def test_approximation_from_a_confusion_matrix_is_labelled(nc, tmp_path):
    """With the confusion matrix of this very map against its reference, the approximation is exact."""
    ref, path, labels, transform, _ = nc
    ok = ref > 0
    cm = np.zeros((7, 7), dtype=np.int64)
    np.add.at(cm, (ref[ok] - 1, labels[ok] - 1), 1)
    scores = tmp_path / "scores.json"
    scores.write_text(
        json.dumps(
            {
                "confusion_matrix": {
                    "rows": "truth",
                    "columns": "prediction",
                    "classes": [NAMES[k] for k in range(1, 8)],
                    "counts": cm.tolist(),
                }
            }
        )
    )
    counts = count_classes(open_class_map(path))
    est = approximate_from_confusion(counts, cm, list(range(1, 8)), NAMES)
    true = _true_area(ref, transform)
    np.testing.assert_allclose(est.area_m2, [true[k] for k in est.classes], rtol=1e-9)
    res = geoseg("areas", str(path), "--confusion", str(scores), "--out", str(tmp_path / "approx.json"))
    assert res.returncode == 0, res.stderr
    assert "APPROXIMATION" in res.stdout
    report = json.loads((tmp_path / "approx.json").read_text())
    assert report["approximation"] and "APPROXIMATION" in report["method"]
    assert all(c["area_ci95_m2"] is None for c in report["classes"])


# --- (d) bad input ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(nc, tmp_path_factory):
    """A small sample of the NC map labelled with the reference classes."""
    ref, path, *_ = nc
    out = tmp_path_factory.mktemp("labelled") / "s.gpkg"
    d = design_sample(open_class_map(path), n=60, seed=1, allocation="equal")
    write_design(d, out)
    pts = gpd.read_file(out, layer="samples")
    pts["ref_class"] = [str(ref[r, c]) for r, c in zip(*_rowcol(pts, d.map.transform), strict=True)]
    pts.to_file(out, layer="samples", driver="GPKG")
    return out


def _rowcol(pts: gpd.GeoDataFrame, transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    col, row = ~transform @ (pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    return row.astype(int), col.astype(int)


def _edit(src: Path, dst: Path, fn) -> Path:
    pts = gpd.read_file(src, layer="samples")
    pts = fn(pts)
    import shutil

    shutil.copy(src, dst)
    pts.to_file(dst, layer="samples", driver="GPKG")
    return dst


def _set(col: str, i: int, value):
    def fn(p):
        p[col] = p[col].astype(object)
        p.loc[i, col] = value
        return p

    return fn


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing-map", "no such file"),
        ("float-map", "integer class ids"),
        ("rgb-map", "one band"),
        ("missing-sample", "no such sample file"),
        ("unlabelled", "1 of 60 samples have no ref_class"),
        ("unknown-class", "ref_class 'cloud', not a class of the map"),
        ("crs", "samples are in EPSG:4326"),
        ("other-map", "a sample of another map?"),
        ("no-sample", "give a labelled SAMPLES GeoPackage"),
        ("checkpoint", "records per-class IoU only"),
        ("id-raster", "not a class map (building ids?)"),
    ],
)
def test_bad_input_one_line_error(nc, labelled, tmp_path, case, expected):
    _, path, labels, transform, crs = nc
    args: list[str] = ["areas", str(path), str(labelled)]
    if case == "missing-map":
        args[1] = str(tmp_path / "nope.tif")
    elif case == "float-map":
        args[1] = str(NC_STRATA)
    elif case == "rgb-map":
        args[1] = str(ROOT / "data" / "samples" / "landsat7_RGB.byte.tif")
    elif case == "missing-sample":
        args[2] = str(tmp_path / "nope.gpkg")
    elif case == "unlabelled":
        args[2] = str(_edit(labelled, tmp_path / "u.gpkg", _set("ref_class", 3, None)))
    elif case == "unknown-class":
        args[2] = str(_edit(labelled, tmp_path / "u.gpkg", _set("ref_class", 3, "cloud")))
    elif case == "crs":
        args[2] = str(_edit(labelled, tmp_path / "u.gpkg", lambda p: p.to_crs(4326)))
    elif case == "other-map":
        other = labels.copy()
        other[labels == 6] = 1
        args[1] = str(_write_map(tmp_path / "other.tif", other, transform, crs))
    elif case == "no-sample":
        args = ["areas", str(path)]
    elif case == "id-raster":
        ids = np.arange(labels.size, dtype=np.uint32).reshape(labels.shape) + 1
        args[1] = str(tmp_path / "buildings.tif")
        with rasterio.open(
            args[1],
            "w",
            driver="GTiff",
            width=ids.shape[1],
            height=ids.shape[0],
            count=1,
            dtype="uint32",
            crs=crs,
            transform=transform,
        ) as dst:
            dst.write(ids, 1)
    elif case == "checkpoint":
        args = ["areas", str(path), "--confusion", str(ROOT / "geoseg" / "checkpoints" / "landcover_rgb.pt")]
    from typer.testing import CliRunner

    from geoseg.cli import app

    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.output
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "a.csv").exists()


def test_unlabelled_samples_can_be_skipped_and_outputs_are_never_clobbered(nc, labelled, tmp_path):
    from typer.testing import CliRunner

    from geoseg.cli import app

    _, path, *_ = nc
    partial = _edit(labelled, tmp_path / "p.gpkg", _set("ref_class", 0, ""))
    res = CliRunner().invoke(app, ["areas", str(path), str(partial), "--skip-unlabelled"])
    assert res.exit_code == 0, res.output
    assert "1 unlabelled sample(s) left out" in res.output
    before = labelled.read_bytes()
    res = CliRunner().invoke(app, ["sample", str(path), "--out", str(labelled), "--n", "30"])
    assert res.exit_code == 2 and "already exists" in res.output and labelled.read_bytes() == before
    res = CliRunner().invoke(
        app, ["sample", str(path), "--out", str(tmp_path / "b.gpkg"), "--n", "30", "--expected-ua", "water=2"]
    )
    assert res.exit_code == 2 and "between 0 and 1" in res.output
    assert not list(tmp_path.glob("*b*.gpkg"))


def test_blind_sample_hides_the_map_class_and_gives_the_same_estimate(nc, tmp_path):
    ref, path, *_ = nc
    cmap = open_class_map(path)
    counts = count_classes(cmap)
    d = design_sample(cmap, n=120, seed=4, min_per_stratum=12, counts=counts)
    for blind in (False, True):
        out = write_design(d, tmp_path / f"s{int(blind)}.gpkg", blind=blind)
        pts = gpd.read_file(out, layer="samples")
        assert ("map_class" in pts.columns) is not blind and ("map_name" in pts.columns) is not blind
        pts["ref_class"] = [str(ref[r, c]) for r, c in zip(*_rowcol(pts, cmap.transform), strict=True)]
        pts.to_file(out, layer="samples", driver="GPKG")
    a = estimate_from_sample(cmap, counts, tmp_path / "s0.gpkg")
    b = estimate_from_sample(cmap, counts, tmp_path / "s1.gpkg")
    np.testing.assert_array_equal(a.sample_counts, b.sample_counts)
    np.testing.assert_allclose(a.area_m2, b.area_m2)


def test_change_map_with_no_change_stratum_and_a_census_stratum(nc, tmp_path):
    """Change between two dates as transition codes (from x 10 + to; 0 = no change is a stratum, 255 =
    invalid; names of all transitions in a tag). True change: herbaceous built over in one block and forest
    cleared to shrubland in a strip; the "after" map has the classifier's errors, so most mapped change
    is false. The true change areas fall inside their intervals; the mapped ones are far off. A one-pixel
    transition is a stratum taken whole (no sampling variance)."""
    from typer.testing import CliRunner

    from geoseg.cli import app

    ref, _, _, transform, crs = nc
    after = ref.copy()
    after[100:200, 100:250][ref[100:200, 100:250] == 3] = 1
    after[300:340][ref[300:340] == 5] = 4
    mapped_after = _degrade(after)

    def codes(a: np.ndarray) -> np.ndarray:
        c = np.where(ref == a, 0, ref.astype(np.int32) * 10 + a).astype(np.uint8)
        c[ref == 0] = 255
        return c

    code, truth = codes(mapped_after), codes(after)
    code[0, 0] = 99  # a transition of one pixel
    names = {0: "no change", 99: "other"} | {
        10 * a + b: f"{NAMES[a]} -> {NAMES[b]}" for a in NAMES for b in NAMES if a != b
    }
    path = tmp_path / "change.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=code.shape[1],
        height=code.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=255,
    ) as dst:
        dst.write(code, 1)
        dst.update_tags(TRANSITION_NAMES=json.dumps({str(k): {"name": v} for k, v in names.items()}))
    samples = tmp_path / "change_samples.gpkg"
    res = CliRunner().invoke(
        app,
        [
            "sample",
            str(path),
            "--out",
            str(samples),
            "--n",
            "600",
            "--nodata",
            "255",
            "--min-per-stratum",
            "25",
            "--seed",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    by_class = pyogrio.read_dataframe(samples, layer="strata").set_index("map_class")
    assert by_class.loc[0, "map_name"] == "no change" and by_class.loc[0, "pixels"] == int((code == 0).sum())
    assert by_class.loc[99, "n_sample"] == 1 and by_class.loc[31, "map_name"] == "herbaceous -> developed"
    pts = gpd.read_file(samples, layer="samples")
    r, c = _rowcol(pts, transform)
    pts["ref_class"] = [names[int(v)] if i % 2 else str(v) for i, v in enumerate(truth[r, c])]
    pts.to_file(samples, layer="samples", driver="GPKG")
    out = tmp_path / "change_areas.json"
    res = CliRunner().invoke(app, ["areas", str(path), str(samples), "--out", str(out)])  # --nodata: design's
    assert res.exit_code == 0, res.output
    rows = {c["class"]: c for c in json.loads(out.read_text())["classes"]}
    assert rows[99]["area_se_m2"] == 0.0 and rows[99]["n_map"] == 1
    px = abs(transform.determinant)
    for k in (31, 54):  # the real changes
        true = float((truth == k).sum()) * px
        assert rows[k]["area_ci95_low_m2"] <= true <= rows[k]["area_ci95_high_m2"], (k, rows[k], true)
        assert abs(rows[k]["mapped_area_m2"] - true) > 3 * rows[k]["area_se_m2"]
    assert rows[31]["mapped_area_m2"] > 2 * float((truth == 31).sum()) * px  # most mapped change is false
