"""Benchmark scenes: real texture mirror-tiled to large sizes, generated once and cached outside the repo.

The Kampala sample (2048², 7.5 cm aerial RGB) is reflected across its edges (``…abc|cba|abc…``) to fill
``size`` x ``size`` pixels, written block row by block row with windowed writes so memory stays at one
source image plus one block row. The scene keeps the sample's CRS (EPSG:3857), pixel size and origin.

    python -m benchmarks.scenes 2048 8192 16384      # generate (or find) scenes, print their paths
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "samples" / "kampala_oam_west.tif"
CACHE_ENV = "GEOSEG_BENCH_CACHE"
VERSION = 1  # bump when the generated content or profile changes (old files are then ignored)
BLOCK = 256
PROFILE = {
    "driver": "GTiff",
    "dtype": "uint8",
    "count": 3,
    "nodata": 0,
    "tiled": True,
    "blockxsize": BLOCK,
    "blockysize": BLOCK,
    "compress": "deflate",
    "interleave": "pixel",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


def cache_dir() -> Path:
    """``$GEOSEG_BENCH_CACHE`` or ``~/.cache/geoseg-bench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "geoseg-bench"


def mirror_index(n: int, period: int, start: int = 0) -> np.ndarray:
    """Source indices of positions ``start … start+n-1`` when a ``period``-long axis is mirror-tiled."""
    i = np.arange(start, start + n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def generate_scene(path: Path, size: int, source: Path = SOURCE) -> Path:
    """Write a ``size`` x ``size`` 3-band uint8 tiled deflate GeoTIFF of mirror-tiled ``source`` texture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with rasterio.open(source) as src:
        data = src.read()  # 2048² x 3 uint8: 12 MiB
        crs, transform = src.crs, src.transform
    _, sh, sw = data.shape
    cols = mirror_index(size, sw)
    try:
        with rasterio.open(tmp, "w", **PROFILE, width=size, height=size, crs=crs, transform=transform) as dst:
            dst.update_tags(GEOSEG_BENCH=f"mirror-tiled {source.name} v{VERSION}")
            for row0 in range(0, size, BLOCK):
                h = min(BLOCK, size - row0)
                rows = mirror_index(h, sh, row0)
                dst.write(data[:, rows[:, None], cols[None, :]], window=Window(0, row0, size, h))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def scene_path(size: int, cache: Path | None = None) -> Path:
    """Path of the cached ``size``² benchmark scene, generating it on first use."""
    path = (cache or cache_dir()) / f"kampala_mirror_{size}_v{VERSION}.tif"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        generate_scene(path, size)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", type=int, nargs="+", help="scene side lengths in pixels")
    ap.add_argument(
        "--cache", type=Path, default=None, help=f"cache folder (default ${CACHE_ENV} or ~/.cache)"
    )
    args = ap.parse_args()
    for size in args.sizes:
        print(scene_path(size, args.cache))


if __name__ == "__main__":
    main()
