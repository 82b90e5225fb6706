"""BlockCOGWriter: block-wise writes of a real class raster give a valid COG (colours, names, overviews)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geoseg.errors import OutputError
from geoseg.outputs.cog import BlockCOGWriter

from .conftest import LULC_COLORS, LULC_NAMES, ClassRaster

KAMPALA_NAMES = {1: "dark", 2: "dim", 3: "bright", 4: "brightest"}
KAMPALA_COLORS = {1: (40, 40, 40), 2: (0, 120, 0), 3: (200, 200, 0), 4: (250, 250, 250)}


def _hex_to_rgb(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i : i + 2], 16) for i in (1, 3, 5))


def write_blocks(writer: BlockCOGWriter, labels: np.ndarray, bh: int, bw: int) -> None:
    h, w = labels.shape
    for row in range(0, h, bh):
        for col in range(0, w, bw):
            writer.write(row, col, labels[row : row + bh, col : col + bw])


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_block_writes_make_a_valid_cog(tmp_path, kampala_classes: ClassRaster) -> None:
    labels = kampala_classes.labels[:1000, :700]  # not a multiple of the 512 blocksize
    out = tmp_path / "landcover.tif"
    with BlockCOGWriter(
        out,
        crs=kampala_classes.crs,
        transform=kampala_classes.transform,
        width=700,
        height=1000,
        colormap=KAMPALA_COLORS,
        class_names=KAMPALA_NAMES,
        tags={"GEOSEG_MODEL": "unit-test"},
        blocksize=512,
    ) as writer:
        write_blocks(writer, labels, 300, 230)  # windows that straddle the 512-pixel tiles
        assert not out.exists()
    assert leftovers(tmp_path) == []
    valid, errors, _warnings = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as r:
        assert np.array_equal(r.read(1), labels)
        assert r.crs == kampala_classes.crs
        assert r.transform.almost_equals(kampala_classes.transform, precision=1e-12)
        assert (r.height, r.width) == labels.shape
        assert r.dtypes[0] == "uint8" and r.nodata == 0
        assert r.profile["tiled"] and r.block_shapes[0] == (512, 512)
        assert r.overviews(1) == [2]
        cmap = r.colormap(1)
        for k, rgb in KAMPALA_COLORS.items():
            assert cmap[k][:3] == rgb and cmap[k][3] == 255
        assert cmap[0][3] == 0  # nodata transparent
        tags = r.tags()
        assert json.loads(tags["CLASS_NAMES"]) == {str(k): v for k, v in KAMPALA_NAMES.items()}
        assert tags["CLASS_3"] == "bright" and tags["GEOSEG_MODEL"] == "unit-test"
        assert r.descriptions == ("class",)
        assert r.compression.name.lower() == "deflate"
        # mode overview: every overview pixel is one of the classes (or nodata)
        assert set(np.unique(r.read(1, out_shape=(500, 350))).tolist()) <= {0, 1, 2, 3, 4}


def test_lulc_with_custom_names_and_uint32_instances(tmp_path, lulc: ClassRaster) -> None:
    out = tmp_path / "lulc.tif"
    colors = {k: _hex_to_rgb(v) for k, v in LULC_COLORS.items()}
    with BlockCOGWriter(
        out,
        crs=lulc.crs,
        transform=lulc.transform,
        width=100,
        height=101,
        colormap=colors,
        class_names=LULC_NAMES,
        blocksize=64,
    ) as writer:
        write_blocks(writer, lulc.labels, 33, 33)
    with rasterio.open(out) as r:
        assert np.array_equal(r.read(1), lulc.labels)
        assert r.tags()["CLASS_8"] == "artificial"
    assert cog_validate(str(out))[0]

    ids = lulc.labels.astype(np.uint32) * 100_000  # instance ids beyond uint16
    out32 = tmp_path / "buildings.tif"
    with BlockCOGWriter(
        out32, crs=lulc.crs, transform=lulc.transform, width=100, height=101, dtype="uint32", blocksize=64
    ) as writer:
        write_blocks(writer, ids.astype(np.int64), 50, 50)  # values fit: cast accepted
    with rasterio.open(out32) as r:
        assert r.dtypes[0] == "uint32" and np.array_equal(r.read(1), ids)
    assert cog_validate(str(out32))[0]


def test_exception_inside_with_leaves_nothing(tmp_path, lulc: ClassRaster) -> None:
    out = tmp_path / "landcover.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with BlockCOGWriter(out, crs=lulc.crs, transform=lulc.transform, width=100, height=101) as writer:
            writer.write(0, 0, lulc.labels[:50])
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_kept_on_failure(tmp_path, lulc: ClassRaster) -> None:
    out = tmp_path / "landcover.tif"
    out.write_bytes(b"previous run")
    with pytest.raises(OutputError):
        with BlockCOGWriter(out, crs=lulc.crs, transform=lulc.transform, width=100, height=101) as writer:
            writer.write(0, 0, lulc.labels)
            writer.write(90, 0, lulc.labels[:20])  # outside the raster
    assert out.read_bytes() == b"previous run"
    assert leftovers(tmp_path) == []


def test_bad_blocks_rejected(tmp_path, lulc: ClassRaster) -> None:
    with BlockCOGWriter(
        tmp_path / "x.tif", crs=lulc.crs, transform=lulc.transform, width=100, height=101
    ) as w:
        with pytest.raises(OutputError, match="do not fit"):
            w.write(0, 0, np.full((2, 2), 300, np.int32))
        with pytest.raises(OutputError, match="2-D"):
            w.write(0, 0, np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(OutputError, match="colour table"):
        BlockCOGWriter(
            tmp_path / "y.tif",
            crs=lulc.crs,
            transform=lulc.transform,
            width=10,
            height=10,
            dtype="float32",
            colormap={1: (1, 2, 3)},
        )
    with pytest.raises(OutputError, match="does not exist"):
        BlockCOGWriter(
            tmp_path / "missing" / "z.tif", crs=lulc.crs, transform=lulc.transform, width=10, height=10
        )
