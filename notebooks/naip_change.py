"""Render notebooks/naip_change.jpg: the NAIP dates and the change map `geoseg change` wrote for them.

PYTHONPATH=. python notebooks/naip_change.py CHANGE_DIR   # a geoseg change output of the NAIP pair
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from rasterio.warp import Resampling, reproject  # noqa: E402

NAIP = Path(__file__).resolve().parents[1] / "data" / "samples" / "naip"


def rgb_on(scene: Path, like) -> np.ndarray:
    out = np.zeros((3, *like.shape), np.uint8)
    with rasterio.open(scene) as src:
        for b in range(3):
            reproject(
                rasterio.band(src, b + 1),
                out[b],
                dst_transform=like.transform,
                dst_crs=like.crs,
                resampling=Resampling.bilinear,
            )
    lo, hi = np.percentile(out[out > 0], [2, 98])
    return (np.clip((out.transpose(1, 2, 0) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def main(change_dir: Path, png: Path) -> None:
    with rasterio.open(change_dir / "change.tif") as c:
        code, cmap, tags = c.read(1), c.colormap(1), c.tags()
        before = rgb_on(NAIP / "m_4709963_se_14_1_20090818.tif", c)
        after = rgb_on(NAIP / "m_4709963_se_14_1_20200831.tif", c)
    table = pd.read_csv(change_dir / "transitions.csv")
    shown = table[table["changed"]].sort_values("area_m2", ascending=False).head(5)
    img = np.full((*code.shape, 3), 235, np.uint8)
    for v in np.unique(code[code > 0]):
        img[code == v] = cmap[int(v)][:3]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, im, title in zip(
        axes, (before, after, img), ("2009-08-18", "2020-08-31", "change (MMU 100 m²)"), strict=True
    ):
        ax.imshow(im)
        ax.set_title(title)
        ax.set_axis_off()
    names = {
        int(k[len("CLASS_") :]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()
    }
    handles = []
    for _, row in shown.iterrows():
        code_of = [k for k, v in names.items() if v == f"{row.from_class} → {row.to_class}"]
        if code_of:
            handles.append(
                Patch(
                    color=np.array(cmap[code_of[0]][:3]) / 255,
                    label=f"{row.from_class} → {row.to_class}: {row.area_m2 / 1e6:.2f} km²",
                )
            )
    axes[2].legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(png, dpi=70, pil_kwargs={"quality": 85})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).with_name("naip_change.jpg"))
