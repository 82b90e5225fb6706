"""Render README's NC Landsat 7 figure from a ``geoseg run`` of the bundled model:
``geoseg run data/training/nc_landsat7/lsat7_2000_stack.tif --out OUT``
``--model geoseg/checkpoints/landcover_landsat.pt``, then
``python notebooks/render_landsat.py OUT notebooks/landsat_landcover.jpg``."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "training" / "nc_landsat7"
VAL_FRACTION = 0.2  # geoseg train's held-out trailing strip


def main(out: Path, jpg: Path) -> None:
    with rasterio.open(DATA / "lsat7_2000_stack.tif") as src:
        rgb = src.read([3, 2, 1], masked=True).astype(np.float32)
        valid = src.dataset_mask() > 0
    with rasterio.open(DATA / "strata.tif") as src:
        truth = src.read(1)
    with rasterio.open(out / "landcover.tif") as src:
        pred = src.read(1)
        colors = src.colormap(1)
        names = src.tags().get("CLASS_NAMES")
    lo, hi = np.percentile(rgb.compressed(), [2, 98])
    img = np.clip((rgb.filled(lo) - lo) / (hi - lo), 0, 1).transpose(1, 2, 0)
    img[~valid] = 1
    cmap = ListedColormap([(1, 1, 1)] + [np.array(colors[i][:3]) / 255 for i in range(1, 8)])  # 0: nodata
    truth = np.where(valid & (truth >= 1) & (truth <= 7), truth, 0).astype(np.uint8)
    w = pred.shape[1]
    cut = round(w * (1 - VAL_FRACTION))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    for ax, (title, data) in zip(
        axes,
        [
            ("Landsat 7 ETM+ 2000 (bands 3,2,1)", img),
            ("strata labels", truth),
            ("landcover_landsat.pt", pred),
        ],
        strict=True,
    ):
        if data.ndim == 3:
            ax.imshow(data)
        else:
            ax.imshow(data, cmap=cmap, vmin=0, vmax=7, interpolation="nearest")
        ax.axvline(cut - 0.5, color="black", linestyle=":", linewidth=1.5)
        ax.set_title(title)
        ax.set_axis_off()
    import json

    labels = json.loads(names) if names else {}
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=np.array(colors[int(k)][:3]) / 255, label=v)
        for k, v in labels.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(jpg, dpi=80, **({"pil_kwargs": {"quality": 85}} if jpg.suffix == ".jpg" else {}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
