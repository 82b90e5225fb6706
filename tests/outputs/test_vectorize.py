"""Block-wise vectorization with seam merging equals whole-raster vectorization (rasterio.features.shapes)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import shape

from geoseg.errors import OutputError
from geoseg.outputs.vectorize import SeamMerger, merge_seams, polygons_to_frame, vectorize_block

from .conftest import LULC_NAMES, ClassRaster


def reference(r: ClassRaster) -> list[tuple[shapely.Geometry, int]]:
    mask = r.labels != r.nodata if r.nodata is not None else None
    return [(shape(g), int(v)) for g, v in features.shapes(r.labels, mask=mask, transform=r.transform)]


def blockwise(r: ClassRaster, block: int) -> list[tuple[shapely.Geometry, int]]:
    return merge_seams(vectorized_blocks(r, block))


def rowwise(
    r: ClassRaster, block: int, seed: int | None = None
) -> tuple[list[tuple[shapely.Geometry, int]], int]:
    """Blocks through ``SeamMerger`` in a shuffled order (raster order without ``seed``); also the most
    seam polygons it held at once."""
    h, w = r.labels.shape
    blocks = vectorized_blocks(r, block)
    order = np.arange(len(blocks)) if seed is None else np.random.default_rng(seed).permutation(len(blocks))
    merger = SeamMerger(h, w)
    out, held = [], 0
    for i in order:
        out += blocks[i].interior + merger.add(blocks[i])
        held = max(held, merger.held())
    return out + merger.finish(), held


def vectorized_blocks(r: ClassRaster, block: int) -> list:
    h, w = r.labels.shape
    blocks = []
    for row in range(0, h, block):
        for col in range(0, w, block):
            data = r.labels[row : row + block, col : col + block]
            win = Window(col, row, data.shape[1], data.shape[0])
            blocks.append(
                vectorize_block(
                    data,
                    window_transform(win, r.transform),
                    nodata=r.nodata,
                    block_row_off=row,
                    block_col_off=col,
                    scene_height=h,
                    scene_width=w,
                )
            )
    return blocks


def signature(polys, pixel_area: float) -> list[tuple[int, int, int]]:
    """Sorted (class, area in pixels, number of holes) of every polygon."""
    return sorted((v, round(g.area / pixel_area), len(g.interiors)) for g, v in polys)


def assert_same_polygons(r: ClassRaster, polys) -> None:
    pixel_area = abs(r.transform.determinant)
    ref = reference(r)
    assert Counter(v for _, v in polys) == Counter(v for _, v in ref)
    area, ref_area = defaultdict(float), defaultdict(float)
    for g, v in polys:
        area[v] += g.area
    for g, v in ref:
        ref_area[v] += g.area
    assert area.keys() == ref_area.keys()
    for v in area:
        assert area[v] == pytest.approx(ref_area[v], rel=1e-9)
    assert signature(polys, pixel_area) == signature(ref, pixel_area)
    geoms = np.array([g for g, _ in polys])
    assert shapely.is_valid(geoms).all()
    assert set(shapely.get_type_id(geoms).tolist()) == {3}  # Polygon
    burned = features.rasterize(
        zip(geoms, [v for _, v in polys], strict=True),
        out_shape=r.labels.shape,
        transform=r.transform,
        fill=255,
        dtype="uint8",
    )
    valid = r.labels != r.nodata
    assert np.array_equal(burned[valid], r.labels[valid])
    assert (burned[~valid] == 255).all()


def test_block_equals_rasterio_shapes(lulc: ClassRaster) -> None:
    h, w = lulc.labels.shape
    bp = vectorize_block(
        lulc.labels, lulc.transform, nodata=0, block_row_off=0, block_col_off=0, scene_height=h, scene_width=w
    )
    assert bp.seam == []  # the whole scene: no internal block edges
    assert_same_polygons(lulc, bp.interior)


@pytest.mark.parametrize("block", [25, 37, 64])
def test_merge_seams_equals_whole_raster_lulc(lulc: ClassRaster, block: int) -> None:
    assert_same_polygons(lulc, blockwise(lulc, block))


@pytest.mark.parametrize("block", [256, 500])
def test_merge_seams_equals_whole_raster_kampala(kampala_classes: ClassRaster, block: int) -> None:
    assert_same_polygons(kampala_classes, blockwise(kampala_classes, block))


def test_merge_seams_small_blocks_noisy(kampala_classes: ClassRaster) -> None:
    """Unsmoothed, pixel-noisy classes (many saddles and holes) in 37-pixel blocks."""
    from .conftest import quantize

    sub = kampala_classes.labels[:300, :370]
    noisy = ClassRaster(quantize(sub * 37 % 251, sub != 0), kampala_classes.transform, kampala_classes.crs, 0)
    assert_same_polygons(noisy, blockwise(noisy, 37))


@pytest.mark.parametrize(("block", "seed"), [(25, 0), (37, 1), (64, 2)])
def test_row_by_row_merge_equals_whole_raster_lulc(lulc: ClassRaster, block: int, seed: int) -> None:
    polys, _ = rowwise(lulc, block, seed)
    assert_same_polygons(lulc, polys)


def test_row_by_row_merge_kampala_holds_few_polygons(kampala_classes: ClassRaster) -> None:
    polys, held = rowwise(kampala_classes, 128)
    assert_same_polygons(kampala_classes, polys)
    n_seam = sum(len(b.seam) for b in vectorized_blocks(kampala_classes, 128))
    assert held < n_seam / 3  # not every seam polygon until the end (12 block rows)


def test_row_by_row_merge_noisy(kampala_classes: ClassRaster) -> None:
    from .conftest import quantize

    sub = kampala_classes.labels[:300, :370]
    noisy = ClassRaster(quantize(sub * 37 % 251, sub != 0), kampala_classes.transform, kampala_classes.crs, 0)
    polys, _ = rowwise(noisy, 37, seed=4)
    assert_same_polygons(noisy, polys)


def test_row_by_row_merge_needs_every_block(lulc: ClassRaster) -> None:
    h, w = lulc.labels.shape
    blocks = vectorized_blocks(lulc, 64)
    merger = SeamMerger(h, w)
    for b in blocks[:-1]:
        merger.add(b)
    with pytest.raises(ValueError, match="missing"):
        merger.finish()


def test_seam_polygons_touch_internal_block_edges(lulc: ClassRaster) -> None:
    h, w = lulc.labels.shape
    row, col, bh, bw = 40, 30, 40, 50
    data = lulc.labels[row : row + bh, col : col + bw]
    t = window_transform(Window(col, row, bw, bh), lulc.transform)
    bp = vectorize_block(
        data, t, nodata=0, block_row_off=row, block_col_off=col, scene_height=h, scene_width=w
    )
    assert bp.seam and bp.interior
    inv = ~t
    for polys, on_seam in ((bp.seam, True), (bp.interior, False)):
        for g, _ in polys:
            x0, y0 = inv @ g.bounds[:2]
            x1, y1 = inv @ g.bounds[2:]
            xmin, xmax = round(min(x0, x1)), round(max(x0, x1))
            ymin, ymax = round(min(y0, y1)), round(max(y0, y1))
            assert (xmin == 0 or xmax == bw or ymin == 0 or ymax == bh) == on_seam


def test_block_polygons_pickle_exactly(lulc: ClassRaster) -> None:
    """A block's polygons cross from worker to client as WKB arrays: same geometries, vertex for vertex."""
    import pickle

    h, w = lulc.labels.shape
    row, col, bh, bw = 40, 30, 40, 50
    t = window_transform(Window(col, row, bw, bh), lulc.transform)
    bp = vectorize_block(
        lulc.labels[row : row + bh, col : col + bw], t, nodata=0, block_row_off=row, block_col_off=col,
        scene_height=h, scene_width=w,
    )  # fmt: skip
    assert bp.seam and bp.interior
    back = pickle.loads(pickle.dumps(bp, protocol=5))
    assert back.window == bp.window and back.transform == bp.transform
    np.testing.assert_array_equal(back.saddles, bp.saddles)
    for a, b in ((bp.interior, back.interior), (bp.seam, back.seam)):
        assert [v for _, v in a] == [v for _, v in b] and all(isinstance(v, int) for _, v in b)
        assert all(g.equals_exact(g2, 0) for (g, _), (g2, _) in zip(a, b, strict=True))


def test_wide_ids_and_no_nodata(lulc: ClassRaster) -> None:
    """uint32 instance-like ids above 2**16 and no nodata value: every pixel is polygonized."""
    ids = lulc.labels.astype(np.uint32) * 70_000 + 3
    h, w = ids.shape
    bp = vectorize_block(
        ids, lulc.transform, nodata=None, block_row_off=0, block_col_off=0, scene_height=h, scene_width=w
    )
    ref = [(shape(g), int(v)) for g, v in features.shapes(ids.astype(np.int32), transform=lulc.transform)]
    pixel_area = abs(lulc.transform.determinant)
    assert signature(bp.interior, pixel_area) == signature(ref, pixel_area)


def test_all_nodata_block_and_bad_input(lulc: ClassRaster) -> None:
    empty = np.zeros((10, 12), np.uint8)
    bp = vectorize_block(
        empty, lulc.transform, nodata=0, block_row_off=0, block_col_off=0, scene_height=10, scene_width=12
    )
    assert bp.interior == [] and bp.seam == []
    assert merge_seams([bp]) == []
    with pytest.raises(OutputError):
        vectorize_block(
            empty.astype(float),
            lulc.transform,
            nodata=0,
            block_row_off=0,
            block_col_off=0,
            scene_height=10,
            scene_width=12,
        )
    with pytest.raises(ValueError):
        vectorize_block(
            empty,
            lulc.transform,
            nodata=0,
            block_row_off=0,
            block_col_off=0,
            scene_height=10,
            scene_width=12,
            connectivity=8,
        )


def test_polygons_to_frame_projected(lulc: ClassRaster) -> None:
    polys = blockwise(lulc, 37)
    gdf = polygons_to_frame(polys, LULC_NAMES, lulc.crs)
    assert list(gdf.columns) == ["class_id", "class_name", "area_m2", "geometry"]
    assert gdf["class_id"].dtype == np.int32 and gdf["area_m2"].dtype == np.float64
    assert gdf.crs.equals(pyproj.CRS.from_user_input(lulc.crs))
    assert set(gdf["class_name"]) == {LULC_NAMES[v] for v in np.unique(lulc.labels) if v}
    assert gdf.geometry.is_valid.all()
    # UTM 33N: planar areas (scale error < 0.1 %) = pixel counts x pixel area
    pixel_area = abs(lulc.transform.determinant)
    for v, total in gdf.groupby("class_id")["area_m2"].sum().items():
        assert total == pytest.approx((lulc.labels == v).sum() * pixel_area, rel=1e-9)


def test_area_m2_geographic_crs(nebraska_classes: ClassRaster) -> None:
    r = nebraska_classes
    assert pyproj.CRS.from_user_input(r.crs).is_geographic
    gdf = polygons_to_frame(blockwise(r, 128), {1: "dark", 2: "mid", 3: "bright"}, r.crs)
    assert len(gdf) > 50
    utm = gdf.to_crs(gdf.estimate_utm_crs()).area.to_numpy()
    assert np.allclose(gdf["area_m2"].to_numpy(), utm, rtol=5e-3)
    # and not the square degrees
    assert gdf["area_m2"].sum() > 1e6


def test_area_m2_web_mercator(kampala_classes: ClassRaster) -> None:
    sub = ClassRaster(kampala_classes.labels[:200, :200], kampala_classes.transform, kampala_classes.crs, 0)
    gdf = polygons_to_frame(blockwise(sub, 100), {}, sub.crs)
    utm = gdf.to_crs(gdf.estimate_utm_crs()).area.to_numpy()
    assert np.allclose(gdf["area_m2"].to_numpy(), utm, rtol=5e-3)
    assert (gdf["class_name"] == gdf["class_id"].astype(str)).all()


def test_polygons_to_frame_empty(lulc: ClassRaster) -> None:
    gdf = polygons_to_frame([], LULC_NAMES, lulc.crs)
    assert len(gdf) == 0 and list(gdf.columns) == ["class_id", "class_name", "area_m2", "geometry"]


def test_merge_seams_of_gdal_polygons_without_block_info(kampala_classes: ClassRaster) -> None:
    """Blocks polygonized by GDAL (other ring orientation, extra collinear vertices), no window/saddles."""

    from geoseg.outputs.vectorize import BlockPolygons

    sub = ClassRaster(kampala_classes.labels[:400, :300], kampala_classes.transform, kampala_classes.crs, 0)
    h, w = sub.labels.shape
    blocks = []
    for row in range(0, h, 128):
        for col in range(0, w, 128):
            data = sub.labels[row : row + 128, col : col + 128]
            t = window_transform(Window(col, row, data.shape[1], data.shape[0]), sub.transform)
            bh, bw = data.shape
            interior, seam = [], []
            for g, v in features.shapes(data, mask=data != 0, transform=t):
                g = shape(g)
                x0, y0 = ~t @ (g.bounds[0], g.bounds[3])
                x1, y1 = ~t @ (g.bounds[2], g.bounds[1])
                on_seam = (
                    (round(x0) == 0 and col > 0)
                    or (round(x1) == bw and col + bw < w)
                    or (round(y0) == 0 and row > 0)
                    or (round(y1) == bh and row + bh < h)
                )
                (seam if on_seam else interior).append((g, int(v)))
            blocks.append(BlockPolygons(interior, seam, t @ Affine.translation(-col, -row)))
    assert_same_polygons(sub, merge_seams(blocks))


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_area_m2_matches_geodesic_area(crs: str) -> None:
    """Local areal scale for small polygons, reprojection for wide ones: both within 1e-5 of the geodesic
    area of the densified polygon, from 1 m² to 300 km wide and from the equator to 70° N."""
    import geopandas as gpd

    from geoseg.outputs.vectorize import EXACT_AREA_SPAN_M, area_m2

    to_crs = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    geod = pyproj.Geod(ellps="WGS84")
    polys, widths = [], []
    for lat in (0.5, 35.0, 70.0):
        x, y = to_crs.transform(32.6, lat)
        for width_m in (1.0, 40.0, 5_000.0, 300_000.0):
            d = width_m / 111_320 if crs == "EPSG:4326" else width_m / np.cos(np.radians(lat))
            polys.append(
                shapely.box(x, y, x + d, y + d * 0.7).difference(
                    shapely.box(x + d / 4, y + d / 4, x + d / 2, y + d / 2)
                )
            )
            widths.append(width_m)
    geoms = gpd.GeoSeries(polys, crs=crs)
    got = area_m2(geoms)
    for g, a, w in zip(polys, got, widths, strict=True):
        dense = shapely.segmentize(g, max_segment_length=shapely.length(g) / 4000)
        lonlat = shapely.transform(dense, lambda xy: np.column_stack(to_geo.transform(xy[:, 0], xy[:, 1])))
        truth = abs(geod.geometry_area_perimeter(lonlat)[0])
        assert a == pytest.approx(truth, rel=1e-5), (w, a, truth)
    assert max(widths) > EXACT_AREA_SPAN_M > min(widths)


def _exact(polys) -> list[tuple[str, int]]:
    return sorted((shapely.normalize(g).wkb_hex, v) for g, v in polys)


@pytest.mark.parametrize("start", [0, 100])
def test_row_by_row_merge_is_exactly_the_whole_raster_on_random_rasters(start: int) -> None:
    """Vertex for vertex, on small random rasters (saddles, pinches and holes everywhere) cut into tiny
    blocks that arrive in raster or shuffled order: every polygon of the merge equals one of tracing the
    whole raster at once."""
    t = Affine(1, 0, 100, 0, -1, 200)
    for seed in range(start, start + 100):
        rng = np.random.default_rng(seed)
        h, w = (int(v) for v in rng.integers(3, 24, 2))
        k = int(rng.integers(2, 4))
        labels = rng.integers(0, k, (h, w)).astype(np.uint8)
        if seed % 3 == 0:  # 2x2 blobs: larger regions, longer rings
            blobs = rng.integers(0, k, (h // 2 + 1, w // 2 + 1)).astype(np.uint8)
            labels = np.kron(blobs, np.ones((2, 2), np.uint8))[:h, :w]
        whole = vectorize_block(
            labels, t, nodata=0, block_row_off=0, block_col_off=0, scene_height=h, scene_width=w
        )
        bh, bw = (int(v) for v in rng.integers(1, 6, 2))
        blocks = [
            vectorize_block(
                labels[r : r + bh, c : c + bw],
                window_transform(Window(c, r, min(bw, w - c), min(bh, h - r)), t),
                nodata=0,
                block_row_off=r,
                block_col_off=c,
                scene_height=h,
                scene_width=w,
            )
            for r in range(0, h, bh)
            for c in range(0, w, bw)
        ]
        for order in (range(len(blocks)), rng.permutation(len(blocks))):
            merger, polys = SeamMerger(h, w), []
            for i in order:
                polys += blocks[i].interior + merger.add(blocks[i])
            polys += merger.finish()
            assert _exact(polys) == _exact(whole.interior), f"seed {seed}, blocks {bh}x{bw}"
