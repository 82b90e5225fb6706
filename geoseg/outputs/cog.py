"""Write a single-band class or instance raster block by block, then turn it into a Cloud-Optimized GeoTIFF.

Blocks go into a hidden, tiled, deflate-compressed GeoTIFF next to the target (memory stays bounded by GDAL's
block cache); on success GDAL's COG driver copies it to the target with overviews (it keeps the colour table,
the band description, nodata and the metadata tags), through a second hidden file and an atomic rename.

Every write is checked: libtiff can report a full disk on stderr only (GDAL never hears of it, and blocks
it failed to write read back as nodata), so before the rename the COG is re-opened, its grid, data type
and every written window are compared with what was written (a digest per window), and GDAL errors
logged meanwhile fail the write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from geoseg.errors import OutputError

COPY_CACHE_MB = 256  # GDAL block cache while the COG (with overviews) is copied from the block file


def class_tags(class_names: dict[int, str]) -> dict[str, str]:
    """Metadata tags holding class names: ``CLASS_NAMES`` (JSON object) and one ``CLASS_<id>`` per class."""
    tags = {"CLASS_NAMES": json.dumps({str(k): v for k, v in sorted(class_names.items())})}
    tags.update({f"CLASS_{k}": v for k, v in sorted(class_names.items())})
    return tags


class BlockCOGWriter:
    """Context manager: ``write`` windows of a single-band raster, get a valid COG at ``path`` on exit.

    On an exception inside the ``with`` block (or ``abort()``) the temporary files are removed and ``path``
    is left untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        crs: object,
        transform: Affine,
        width: int,
        height: int,
        dtype: str = "uint8",
        nodata: int | float | None = 0,
        colormap: dict[int, tuple[int, int, int]] | None = None,
        class_names: dict[int, str] | None = None,
        tags: dict[str, str] | None = None,
        blocksize: int = 512,
        overview_resampling: str = "mode",
        band_description: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.width, self.height = int(width), int(height)
        self.blocksize = int(blocksize)
        self.overview_resampling = overview_resampling
        if self.width <= 0 or self.height <= 0:
            raise OutputError(f"{self.path.name}: raster size must be positive, got {width}x{height}")
        if self.blocksize <= 0 or self.blocksize % 16:
            raise OutputError(f"{self.path.name}: blocksize must be a positive multiple of 16")
        if colormap and self.dtype not in (np.uint8, np.uint16):
            raise OutputError(
                f"{self.path.name}: a colour table needs uint8 or uint16 data, not {self.dtype}"
            )
        if not self.path.parent.is_dir():
            raise OutputError(f"output folder {self.path.parent} does not exist")
        token = uuid.uuid4().hex[:12]
        self._tmp = self.path.with_name(f".{self.path.name}.{token}.tmp.tif")
        self._tmp_cog = self.path.with_name(f".{self.path.name}.{token}.cog.tif")
        all_tags = dict(tags or {})
        if class_names:
            all_tags.update(class_tags(class_names))
        try:
            self._ds = rasterio.open(
                self._tmp,
                "w",
                driver="GTiff",
                width=self.width,
                height=self.height,
                count=1,
                dtype=self.dtype.name,
                crs=crs,
                transform=transform,
                nodata=nodata,
                tiled=True,
                blockxsize=self.blocksize,
                blockysize=self.blocksize,
                compress="deflate",
                zlevel=1,  # temporary file: favour speed
                BIGTIFF="IF_SAFER",
                SPARSE_OK=True,  # blocks never written read back as nodata
            )
            if colormap:
                cmap = {int(k): tuple(int(c) for c in v) for k, v in colormap.items()}
                if nodata is not None and int(nodata) not in cmap:
                    cmap[int(nodata)] = (0, 0, 0, 0)
                self._ds.write_colormap(1, cmap)
            self._ds.set_band_description(1, band_description or ("class" if class_names else "value"))
            if all_tags:
                self._ds.update_tags(**all_tags)
        except Exception as exc:
            self._cleanup()
            raise OutputError(f"cannot create {self._tmp}: {exc}") from exc
        self._done = False
        self._crs, self._transform, self._nodata = self._ds.crs, transform, nodata
        self._digests: dict[tuple[int, int, int, int], bytes] = {}  # window -> digest of its pixels

    def __enter__(self) -> BlockCOGWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, row_off: int, col_off: int, array2d: np.ndarray) -> None:
        """Write ``array2d`` with its top-left pixel at (row_off, col_off) of the raster."""
        if self._done:
            raise OutputError(f"{self.path.name}: writer already closed")
        arr = np.asarray(array2d)
        if arr.ndim != 2:
            raise OutputError(f"{self.path.name}: expected a 2-D block, got shape {arr.shape}")
        h, w = arr.shape
        if row_off < 0 or col_off < 0 or row_off + h > self.height or col_off + w > self.width:
            raise OutputError(
                f"{self.path.name}: block {h}x{w} at ({row_off}, {col_off}) is outside the "
                f"{self.height}x{self.width} raster"
            )
        if arr.dtype != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype) and arr.size:
                info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else np.finfo(self.dtype)
                if arr.min() < info.min or arr.max() > info.max:
                    raise OutputError(f"{self.path.name}: block values do not fit {self.dtype}")
            arr = arr.astype(self.dtype)
        try:
            self._ds.write(arr, 1, window=Window(col_off, row_off, w, h))
        except Exception as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from exc
        self._digests[(row_off, col_off, h, w)] = _digest(arr)

    def close(self) -> None:
        """Finish: convert the temporary GeoTIFF into the COG at ``path`` and remove the temporary files."""
        if self._done:
            return
        self._done = True
        errors = _GdalErrors()
        try:
            with errors:
                self._ds.close()
            errors.check(self._tmp)
            # a few rows of blocks are all the copy needs; GDAL's default cache (5 % of RAM) would fill up
            with errors, rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=COPY_CACHE_MB):
                rasterio.shutil.copy(
                    self._tmp,
                    self._tmp_cog,
                    driver="COG",
                    compress="deflate",
                    overview_resampling=self.overview_resampling,
                    blocksize=self.blocksize,
                    BIGTIFF="IF_SAFER",
                    NUM_THREADS="ALL_CPUS",
                )
            errors.check(self._tmp_cog)
            self._verify(self._tmp_cog)
            os.replace(self._tmp_cog, self.path)
        except OutputError:
            raise
        except Exception as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from exc
        finally:
            self._cleanup()

    def _verify(self, path: Path) -> None:
        """Re-open the written COG: grid, data type, nodata and every written window as written."""
        with rasterio.open(path) as ds:
            if (ds.width, ds.height, ds.count) != (self.width, self.height, 1):
                raise OutputError(f"{path.name} reads back as {ds.width}x{ds.height}x{ds.count}")
            if ds.dtypes[0] != self.dtype.name or ds.crs != self._crs or ds.nodata != self._nodata:
                raise OutputError(f"{path.name} reads back with another data type, CRS or nodata")
            if not ds.transform.almost_equals(self._transform, precision=1e-9):
                raise OutputError(f"{path.name} reads back with another geotransform")
            for (r, c, h, w), digest in self._digests.items():
                if _digest(ds.read(1, window=Window(c, r, w, h))) != digest:
                    raise OutputError(f"{path.name}: window at row {r}, col {c} reads back differently")

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is not created or changed."""
        if self._done:
            return
        self._done = True
        try:
            self._ds.close()
        except Exception:  # noqa: BLE001 - already failing, the files are removed anyway
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        for p in (self._tmp, self._tmp_cog):
            for q in (p, p.with_name(p.name + ".aux.xml"), p.with_name(p.name + ".ovr")):
                q.unlink(missing_ok=True)


def _digest(arr: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(arr).data, digest_size=16).digest()


class _GdalErrors(logging.Handler):
    """Collects the GDAL errors rasterio logs (CPLE_* at ERROR level) while active."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _GdalErrors:
        logging.getLogger("rasterio").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("rasterio").removeHandler(self)

    def check(self, path: Path) -> None:
        if self.messages:
            raise OutputError(f"cannot write {path}: {self.messages[0]}")
