"""Nothing lost, nothing silently wrong: full disks, --overwrite, concurrent runs, signals and resume,
one-line errors. Real ``python -m geoseg`` processes, real file systems (tmpfs), real signals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from shapely.geometry import Polygon

from geoseg.errors import OutputError
from geoseg.io.staging import check_output
from geoseg.outputs.cog import BlockCOGWriter
from tests.conftest import BUILDINGS_MODEL, KAMPALA, KAMPALA_BUILDINGS, LANDCOVER_MODEL, ROOT, crop_geotiff

# small, quick runs: 1100x1100 px on the scene grid = 9 output blocks of 512 px, 25 tiles
FAST = ["--tile", "256", "--overlap", "32", "--block", "512"]
FAST += ["--no-progress", "--in-process", "--no-resample"]
N_BLOCKS = 9


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def geoseg(*args, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoseg", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=ROOT,
    )


def start(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
        **kw,
    )


def error_line(stderr: str) -> str:
    """The one ``error:`` line a failure prints, last, and no traceback anywhere."""
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"finished early: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)


def saved_blocks(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.partial-*/.blocks/*.npz"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return crop_geotiff(KAMPALA, tmp_path_factory.mktemp("scene") / "crop.tif", 300, 500, 1100, 1100)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scene) -> Path:
    """An uninterrupted run of ``scene``."""
    out = tmp_path_factory.mktemp("ref") / "out"
    res = geoseg("run", scene, "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    return out


def features(gpkg: Path) -> list[tuple]:
    """The polygons of a landcover layer, independent of feature order and ring start vertex."""
    df = pyogrio.read_dataframe(gpkg, layer="landcover")
    geoms = shapely.to_wkb(shapely.normalize(df.geometry.values))
    return sorted(zip(geoms, df["class_id"].astype(int), df["class_name"], strict=True))


@contextlib.contextmanager
def small_fs(mountpoint: Path, size: str, read_only: bool = False):
    """A real file system of ``size`` (tmpfs; a loop-mounted ext4 image where tmpfs is not allowed)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mountpoint)], capture_output=True)
    if res.returncode != 0:
        image = mountpoint.with_suffix(".img")
        kb = int(size.rstrip("k"))
        steps = [
            ["truncate", "-s", f"{kb + 1024}k", str(image)],  # ext4 metadata takes ~1 MB of it
            ["mkfs.ext4", "-q", "-m", "0", str(image)],
            ["mount", "-o", "loop" + (",ro" if read_only else ""), str(image), str(mountpoint)],
        ]
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True) if shutil.which(cmd[0]) else None
            if r is None or r.returncode != 0:
                why = f"tmpfs: {res.stderr!r}; {cmd[0]}: {r and r.stderr!r}"
                pytest.skip(f"cannot mount a small file system here ({why})")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


# --- every write checked ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1700k", "1900k"])
def test_disk_full_during_the_write_fails_and_commits_nothing(tmp_path, scene, reference, size):
    """File systems that fill up at different points of the run (GeoPackage appends, block files, the
    COG write: which one depends on page and journal timing) or just hold it: every run either fails
    with one line, exit 2, and leaves the file system empty, or succeeds with outputs equal to a run on
    a roomy disk. (``test_cog_writer_raises_...`` fills a disk exactly during the COG copy.)"""
    with small_fs(tmp_path / "fs", size) as fs:
        res = geoseg("run", scene, "--out", fs / "out", *FAST)
        assert res.returncode != 0 or size != "1700k", "1.7 MB cannot hold this run"
        if res.returncode == 0:
            assert (fs / "out" / "landcover.tif").read_bytes() == (reference / "landcover.tif").read_bytes()
            assert features(fs / "out" / "geoseg.gpkg") == features(reference / "geoseg.gpkg")
            return
        assert res.returncode == 2, res.stderr
        line = error_line(res.stderr)
        assert "cannot write" in line or "cannot save" in line or "No space" in line, line
        assert list(fs.iterdir()) == []  # no output folder, no staging folder, no lock file


def test_cog_writer_raises_when_the_disk_fills_during_the_cog_copy(tmp_path):
    """The block file fits, the COG copy beside it does not: OutputError, no target, no temporaries."""
    rng = np.random.default_rng(0)
    with small_fs(tmp_path / "fs", "2000k") as fs:
        writer = BlockCOGWriter(
            fs / "x.tif", crs="EPSG:3857", transform=Affine(1, 0, 0, 0, -1, 0), width=2048, height=1024
        )
        for r in (0, 512):
            for c in range(0, 2048, 512):
                writer.write(r, c, rng.integers(0, 16, (512, 512), dtype=np.uint8))  # ~1 MB compressed
        with pytest.raises(OutputError, match=r"x\.tif"):
            writer.close()
        assert list(fs.iterdir()) == []


def test_rerun_verifies_checksums_and_redoes_damaged_outputs(tmp_path, scene, reference):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    record = json.loads((out / "run.json").read_text())["properties"]["geoseg:outputs"]
    assert set(record) == {"landcover.tif", "landcover.tif.aux.xml", "buildings.tif", "geoseg.gpkg"}
    for name, rec in record.items():
        data = (out / name).read_bytes()
        assert rec == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    cog = (out / "landcover.tif").read_bytes()
    damaged = bytearray(cog)
    damaged[len(cog) // 2] ^= 0xFF
    (out / "landcover.tif").write_bytes(damaged)
    res = geoseg("run", scene, "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    assert "landcover.tif does not match its recorded SHA-256; running again" in res.stderr
    assert (out / "landcover.tif").read_bytes() == cog
    assert features(out / "geoseg.gpkg") == features(reference / "geoseg.gpkg")
    # a deleted output is found the same way (the check a rerun makes before "already complete")
    fp = json.loads((out / "run.json").read_text())["properties"]["geoseg:fingerprint"]
    assert check_output(out, fp, overwrite=False) == (True, None)
    (out / "geoseg.gpkg").unlink()
    assert check_output(out, fp, overwrite=False) == (False, "geoseg.gpkg is missing")


# --- --overwrite only replaces what geoseg wrote ----------------------------------------------------


def test_overwrite_never_deletes_what_geoseg_did_not_write(tmp_path, scene):
    data = tmp_path / "data"
    data.mkdir()
    own_scene = shutil.copy(scene, data / "scene.tif")
    (data / "notes.txt").write_text("mine")
    res = geoseg("run", own_scene, "--out", data, "--overwrite", *FAST)
    assert res.returncode == 2 and "holds the input" in error_line(res.stderr)
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt", "scene.tif"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = geoseg("run", scene, "--out", foreign, "--overwrite", *FAST)
    assert res.returncode == 2 and "did not write (notes.txt)" in error_line(res.stderr)
    assert (foreign / "notes.txt").read_text() == "mine"

    regular = tmp_path / "result"
    regular.write_text("a file")
    res = geoseg("run", scene, "--out", regular, "--overwrite", *FAST)
    assert res.returncode == 2 and "is a file" in error_line(res.stderr)
    assert regular.read_text() == "a file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no .old-*, no staging


# --- one writer per output folder -------------------------------------------------------------------


def test_concurrent_runs_on_one_out_refuse_or_wait(tmp_path, scene):
    out = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    first = start("run", KAMPALA, "--out", out, *FAST)  # 2048² px, 16 blocks: the slow one
    wait_for(lambda: lock.exists() and f'"pid": {first.pid}' in lock.read_text(), first)
    refused = start("run", scene, "--out", out, *FAST)
    waiting = start("run", scene, "--out", out, "--wait", "--overwrite", *FAST)
    _, err = refused.communicate(timeout=180)
    assert refused.returncode == 2
    assert f"geoseg pid {first.pid} on {socket.gethostname()}" in error_line(err)
    assert first.wait(timeout=300) == 0
    _, err_w = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err_w
    assert f"waiting for geoseg pid {first.pid}" in err_w
    item = json.loads((out / "run.json").read_text())
    # the waiter ran after (hrefs are relative to the run folder)
    assert (out / item["assets"]["source"]["href"]).resolve() == scene.resolve()
    assert not lock.exists() and not list(tmp_path.glob(".out.*"))


# --- interrupted runs resume ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_resumes_with_identical_outputs(tmp_path, scene, reference, sig):
    out = tmp_path / "out"
    proc = start("run", scene, "--out", out, *FAST)
    wait_for(lambda: len(saved_blocks(out)) >= 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    kept = len(saved_blocks(out))
    assert 3 <= kept < N_BLOCKS and not out.exists()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + sig
        line = error_line(err)
        assert f"interrupted by SIGTERM; {kept} of {N_BLOCKS} blocks are kept" in line
    else:
        assert proc.returncode == -sig
        # a stale lock file: its holder is dead, the kernel dropped its flock, the rerun takes it
        assert f'"pid": {proc.pid}' in (tmp_path / ".out.lock").read_text()
    stale = tmp_path / ".out.partial-0123456789abcdef"  # an interrupted run of other inputs
    (stale / ".blocks").mkdir(parents=True)
    res = geoseg("run", scene, "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    assert f"resuming: {kept} of {N_BLOCKS} blocks were finished by an interrupted run" in res.stderr
    assert (out / "landcover.tif").read_bytes() == (reference / "landcover.tif").read_bytes()
    assert features(out / "geoseg.gpkg") == features(reference / "geoseg.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # stale staging and lock gone


def test_ctrl_c_stops_worker_processes_with_one_line(tmp_path, scene):
    """SIGINT to the whole process group (a terminal's Ctrl-C) with real worker processes: exit 130,
    one line, no worker KeyboardInterrupt tracebacks."""
    out = tmp_path / "out"
    args = [a for a in FAST if a != "--in-process"]
    proc = start("run", scene, "--out", out, "--workers", "1", *args, start_new_session=True)
    wait_for(lambda: len(saved_blocks(out)) >= 1, proc, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted by SIGINT" in error_line(err)


# --- one-line errors before anything starts ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _thin_scene(tmp_path: Path) -> Path:
    """100000 x 1 px of real imagery: resampled to the model's 0.3 m it would be 0.25 px high."""
    with rasterio.open(KAMPALA) as src:
        win = rasterio.windows.Window(0, 1000, 2048, 1)
        row = np.tile(src.read(window=win), (1, 1, 49))[:, :, :100000]
        profile = src.profile | {"height": 1, "width": row.shape[2], "transform": src.window_transform(win)}
        profile.update(blockxsize=1024, blockysize=16)
    with rasterio.open(tmp_path / "thin.tif", "w", **profile) as dst:
        dst.write(row)
    return tmp_path / "thin.tif"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "scene.tif")
    return tmp_path / "scene.tif"


CASES = {
    "device-foo": (lambda t, s: [s, "--out", t / "o", "--device", "foo"], "--device 'foo': expected auto"),
    "device-cuda": (lambda t, s: [s, "--out", t / "o", "--device", "cuda"], "no CUDA GPU is available"),
    "scheduler-refused": (
        lambda t, s: [s, "--out", t / "o", "--scheduler", f"tcp://127.0.0.1:{_closed_port()}"],
        "cannot connect within 5 s",
    ),
    "out-under-a-file": (
        lambda t, s: [s, "--out", (t / "f.txt").write_text("x") and t / "f.txt" / "o"],
        "is a file, so no folder can be created",
    ),
    "out-under-proc": (lambda t, s: [s, "--out", "/proc/geoseg-out"], "--out /proc/geoseg-out: cannot write"),
    "fifo-scene": (lambda t, s: [_fifo(t), "--out", t / "o"], "is a FIFO, not a raster file"),
    "thin-scene": (lambda t, s: [_thin_scene(t), "--out", t / "o"], "too thin to segment"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_options_fail_with_one_line_before_the_cluster(tmp_path, scene, case):
    if case == "device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    make_args, expected = CASES[case]
    args = make_args(tmp_path, scene)
    fast = [a for a in FAST if a not in ("--no-resample",)] if case == "thin-scene" else FAST
    t0 = time.monotonic()
    res = geoseg("run", *args, *fast, timeout=60)  # a FIFO must not hang
    assert res.returncode == 2, res.stderr
    assert expected in error_line(res.stderr)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "o").exists()


def test_unreachable_scheduler_times_out_in_seconds(tmp_path, scene):
    t0 = time.monotonic()
    res = geoseg("run", scene, "--out", tmp_path / "o", "--scheduler", "tcp://10.255.255.1:8786", timeout=60)
    assert res.returncode == 2
    line = error_line(res.stderr)  # (some sandboxes answer any address: then no Dask scheduler answers)
    assert line.startswith("error: --scheduler tcp://10.255.255.1:8786: ") and "within 5 s" in line
    assert time.monotonic() - t0 < 25


def test_read_only_out_is_refused(tmp_path, scene):
    with small_fs(tmp_path / "ro", "100k", read_only=True) as ro:
        res = geoseg("run", scene, "--out", ro / "o", *FAST)
        assert res.returncode == 2
        assert "read-only file system" in error_line(res.stderr)


# --- worker-side failures come back as one line -----------------------------------------------------


def test_corrupt_pixel_blocks_name_the_file_and_window(tmp_path, scene):
    """A valid GeoTIFF whose tile at row 512, col 256 holds garbage instead of deflate data."""
    bad = tmp_path / "bad.tif"
    shutil.copy(scene, bad)
    with rasterio.open(bad) as src:
        assert src.block_shapes[0] == (256, 256)
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_2", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_2", "TIFF", bidx=1))
    with open(bad, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    res = geoseg("run", bad, "--out", tmp_path / "o", *FAST)
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert str(bad) in line and "cannot read the pixels of window rows" in line
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_checkpoint_weights_that_do_not_fit_are_one_line(tmp_path, scene):
    payload = torch.load(LANDCOVER_MODEL, map_location="cpu", weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.ndim == 4)
    payload["state_dict"][name] = payload["state_dict"][name][:, :1]  # wrong input channels
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    res = geoseg("run", scene, "--out", tmp_path / "o", "--model", bad, *FAST)
    assert res.returncode == 2
    line = error_line(res.stderr)
    assert str(bad) in line and "weights do not fit its architecture" in line


def test_evaluate_repairs_self_intersecting_label_polygons(tmp_path):
    """Bow-tie outlines (as digitised by hand) among real building labels: scored, not a GEOS error."""
    image = crop_geotiff(KAMPALA, tmp_path / "crop.tif", 0, 0, 1024, 1024)
    labels = gpd.read_file(KAMPALA_BUILDINGS, engine="pyogrio")
    bowties = []
    for g in labels.geometry.iloc[:20]:
        x0, y0, x1, y1 = g.bounds
        bowties.append(Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)]))
    labels = gpd.GeoDataFrame(geometry=list(labels.geometry.iloc[20:]) + bowties, crs=labels.crs)
    assert (~labels.is_valid).sum() == len(bowties)
    path = tmp_path / "labels.geojson"
    labels.to_file(path, engine="pyogrio")
    res = geoseg("evaluate", "--model", BUILDINGS_MODEL, "--images", image, "--labels", path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "building" in res.stdout
