"""``geoseg change`` on generated pairs of N x N pixels: time and peak RSS of the comparison alone.

The pair is the bundled NAIP 2009 and 2020 dates (5 m, 4 bands) repeated to N x N, classified by the
landcover baseline's NDVI/NDWI rules and written as run folders (``write_run_folder``); each size is
compared in its own process so its peak RSS is its own.

    PYTHONPATH=. python -m benchmarks.change 2048 8192 [--out /tmp/geoseg-change-bench]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox

ROOT = Path(__file__).resolve().parents[1]
NAIP = ROOT / "data" / "samples" / "naip"
DATES = {
    "before": (NAIP / "m_4709963_se_14_1_20090818.tif", dt.date(2009, 8, 18)),
    "after": (NAIP / "m_4709963_se_14_1_20200831.tif", dt.date(2020, 8, 31)),
}


def prepare(n: int, folder: Path) -> None:
    """Run folders ``folder/before`` and ``folder/after`` of N x N pixels (and their scenes)."""
    from geoseg.change.runs import ClassDef, write_run_folder
    from geoseg.inference.baseline import LandcoverBaseline

    base = LandcoverBaseline()
    classes = [ClassDef(c.id, c.name, c.color) for c in base.classes]
    ids = np.array([c.id for c in base.classes], np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for key, (scene, date) in DATES.items():
        if (folder / key / "run.json").exists():
            continue
        with rasterio.open(scene) as src:
            img, profile, valid = src.read(), src.profile, src.read_masks(1) > 0
        cls = np.where(valid, ids[base.predict(img, valid, ["red", "green", "blue", "nir"], 5.0)], 0)
        reps = (-(-n // img.shape[1]), -(-n // img.shape[2]))
        path = folder / f"{key}_{date:%Y%m%d}.tif"
        profile.update(width=n, height=n, tiled=True, blockxsize=512, blockysize=512, compress="deflate")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.tile(img, (1, *reps))[:, :n, :n])
        with rasterio.open(path) as src:
            geobox = GeoBox.from_rio(src)
        write_run_folder(
            folder / key,
            array=np.tile(cls, reps)[:n, :n].astype(np.uint8),
            geobox=geobox,
            classes=classes,
            date=date,
            model_id="baseline:landcover",
            source=path,
        )


def measure(folder: Path) -> dict:
    from geoseg.change import ChangeConfig, run_change

    t0 = time.perf_counter()
    s = run_change(
        ChangeConfig(
            before=folder / "before",
            after=folder / "after",
            out=folder / "change",
            overwrite=True,
            progress=False,
        ),
        notify=lambda m: None,
    )
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": _vm_hwm_mib(),
        "regions": s.regions,
        "changed_percent": round(100 * s.changed_m2 / s.compared_m2, 2),
    }


def _vm_hwm_mib() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("sizes", nargs="+", type=int)
    p.add_argument("--out", type=Path, default=Path("/tmp/geoseg-change-bench"))
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        print(json.dumps(measure(a.out / str(a.sizes[0]))))
        return
    for n in a.sizes:
        prepare(n, a.out / str(n))
        res = subprocess.run(
            [sys.executable, "-m", "benchmarks.change", str(n), "--out", str(a.out), "--measure"],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(res.stdout.strip().splitlines()[-1])
        cells = [f"{n}²", f"{row['seconds']} s", f"{row['peak_rss_mib']} MiB", f"{row['regions']:,}"]
        print("| " + " | ".join([*cells, f"{row['changed_percent']} %"]) + " |")


if __name__ == "__main__":
    main()
