"""Stack the six NC Landsat 7 single-band files into ``lsat7_2000_stack.tif`` (float32, nodata -99999,
band descriptions blue, green, red, nir, swir1, swir2). Run from the repository root:
``python data/training/nc_landsat7/stack_bands.py``."""

from pathlib import Path

import numpy as np
import rasterio

HERE = Path(__file__).parent
BANDS = [("10", "blue"), ("20", "green"), ("30", "red"), ("40", "nir"), ("50", "swir1"), ("70", "swir2")]
NODATA = -99999.0


def main() -> None:
    arrays = []
    for num, _ in BANDS:
        with rasterio.open(HERE / f"lsat7_2000_{num}.tif") as src:
            a = src.read(1, masked=True).astype(np.float32)
            profile = src.profile
        arrays.append(a.filled(NODATA))
    stack = np.stack(arrays)
    stack[:, (stack == NODATA).any(axis=0)] = NODATA  # a pixel is valid only where every band is
    profile.update(count=len(BANDS), dtype="float32", nodata=NODATA, compress="deflate", predictor=3,
                   tiled=True, blockxsize=256, blockysize=256, interleave="pixel")
    with rasterio.open(HERE / "lsat7_2000_stack.tif", "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = tuple(name for _, name in BANDS)


if __name__ == "__main__":
    main()
