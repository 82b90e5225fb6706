"""The README's area-estimation example, end to end with the two commands.

Reference: the real 7-class land-cover raster of Wake County, NC (GRASS sample data "landclass96", 28.5 m,
``data/training/nc_landsat7/strata.tif``). Map: the same raster with a classifier's kinds of errors (the
test suite's ``_degrade``), written like ``geoseg run``'s ``landcover.tif``. An analyst is played by the
reference raster: each sample point gets the reference class under it. Then the true areas are known and
can be set next to the mapped and the error-adjusted ones.

    .venv/bin/python notebooks/areas_example.py OUTDIR [--n 500] [--seed 1]

With ``--scale N`` it also writes an N x N map (the NC map repeated) and times both commands on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoseg.outputs.cog import BlockCOGWriter  # noqa: E402
from tests.test_areas import COLORS, NAMES, NC_STRATA, _degrade  # noqa: E402


def geoseg(*args: str) -> str:
    cmd = ["/usr/bin/time", "-f", "peak RSS %M KiB, %e s", sys.executable, "-m", "geoseg", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(res.stderr)
    print("$ geoseg " + " ".join(args) + "\n" + res.stdout + res.stderr.strip().splitlines()[-1] + "\n")
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=int, default=0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(NC_STRATA) as src:
        raw = src.read(1)
        ref = np.where(raw == src.nodata, 0, raw).astype(np.uint8)
        transform, crs = src.transform, src.crs
    labels = _degrade(ref)
    lc = a.out / "landcover.tif"
    with BlockCOGWriter(
        lc,
        crs=crs,
        transform=transform,
        width=ref.shape[1],
        height=ref.shape[0],
        colormap=COLORS,
        class_names=NAMES,
    ) as w:
        w.write(0, 0, labels)
    samples = a.out / "samples.gpkg"
    samples.unlink(missing_ok=True)
    geoseg("sample", str(lc), "--out", str(samples), "--n", str(a.n), "--seed", str(a.seed))
    pts = gpd.read_file(samples, layer="samples")
    col, row = ~transform @ (pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    pts["ref_class"] = [str(v) for v in ref[row.astype(int), col.astype(int)]]  # the "analyst"
    pts.to_file(samples, layer="samples", driver="GPKG")
    geoseg("areas", str(lc), str(samples), "--out", str(a.out / "areas.json"))
    report = json.loads((a.out / "areas.json").read_text())
    px = abs(transform.determinant)
    print(f"{'class':<12}{'true ha':>10}{'mapped ha':>11}{'adjusted ha':>13}{'± 95% ha':>10}  true inside CI")
    for c in report["classes"]:
        true = float((ref == c["class"]).sum()) * px
        inside = c["area_ci95_low_m2"] <= true <= c["area_ci95_high_m2"]
        print(
            f"{c['name']:<12}{true / 1e4:>10,.0f}{c['mapped_area_m2'] / 1e4:>11,.0f}"
            f"{c['area_m2'] / 1e4:>13,.0f}"
            f"{c['area_ci95_m2'] / 1e4:>10,.0f}  {'yes' if inside else 'NO'}"
        )
    if a.scale:
        big = a.out / f"landcover_{a.scale}.tif"
        t0 = time.perf_counter()
        h, w0 = labels.shape
        with BlockCOGWriter(
            big,
            crs=crs,
            transform=transform,
            width=a.scale,
            height=a.scale,
            colormap=COLORS,
            class_names=NAMES,
        ) as w:
            for r0 in range(0, a.scale, 1024):
                rr = (np.arange(r0, min(r0 + 1024, a.scale)) % h)[:, None]
                w.write(r0, 0, labels[rr, np.arange(a.scale) % w0])
        print(f"wrote {big.name} in {time.perf_counter() - t0:.1f} s")
        bs = a.out / f"samples_{a.scale}.gpkg"
        bs.unlink(missing_ok=True)
        geoseg("sample", str(big), "--out", str(bs), "--n", str(a.n), "--seed", str(a.seed))
        pts = gpd.read_file(bs, layer="samples")
        pts["ref_class"] = pts["map_class"].astype(str)  # any labels: this times the reading
        pts.to_file(bs, layer="samples", driver="GPKG")
        geoseg("areas", str(big), str(bs))


if __name__ == "__main__":
    main()
