"""Benchmark orchestrator: model-only ceiling (a), ``geoseg run`` end to end (b), naive script (c), peers.

Every side runs in its own subprocess with an explicit environment, on the same model, tile, overlap,
batch size and torch thread count; a thread samples the RSS of each side's whole process tree (Dask
workers included) every 0.1 s. Tiles are counted the same way for all sides: ``len(TileGrid(h, w,
tile, overlap))`` on the scene grid (``geoseg run --no-resample``).

    python -m benchmarks.run --sizes 2048,8192,16384 --batch 8 --tile 512 --overlap 64 \\
        --results benchmarks/RESULTS.md
    python -m benchmarks.run --short              # CI form: one 1024² scene, batch 4

With ``--peers SIZE`` the same run also times the peer scripts of ``benchmarks/peers`` (a plain PyTorch
loop, torchgeo's sampler loop, geoai's tiled predictor; run by ``--peers-python``, default
``.venv-peers/bin/python`` from ``make peers-venv``) on the SIZE² scene, each with and without the
allocator setting, next to one ``geoseg run`` on that scene.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.windows import Window as RioWindow

from benchmarks.scenes import ROOT, cache_dir, scene_path
from geoseg.inference.precision import cpu_info
from geoseg.run.allocator import ALLOCATOR_ENV  # the setting geoseg gives its workers
from tiles import TileGrid

BUNDLED_MODEL = ROOT / "geoseg" / "checkpoints" / "landcover_rgb.pt"
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEERS_DIR = ROOT / "benchmarks" / "peers"
# name: (script in benchmarks/peers, what it is); run in this order, each tuned then default.
PEERS = {
    "plain": ("plain_script.py", "hand-written PyTorch + rasterio loop"),
    "torchgeo": ("torchgeo_loop.py", "torchgeo RasterDataset + GridGeoSampler + DataLoader"),
    "geoai": ("geoai_predict.py", "geoai semantic_inference_on_geotiff"),
}
# Peers whose output holds the 0-based class index instead of the checkpoint's class ids.
PEERS_WRITING_CLASS_INDEX = {"geoai"}
SHORT_SIZE = 1024
MIB = 1024 * 1024
# Threading settings recorded next to MALLOC_* (OpenMP's wait policy matters a lot on small machines).
THREAD_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_")

# What the tables mean (appended to the markdown).
READING_NOTES = [
    "- tiles/s and MP/s of (b) and (c) are per wall second of the whole command (interpreter start, "
    "model load, Dask cluster start-up, reading, writing and, for geoseg, vectorizing included); "
    "(a) is the steady-state forward-pass rate, warm-up excluded.",
    "- geoseg's read/predict/stitch/write/vectorize come from `run.json` (`geoseg:timing`): summed "
    "task seconds over all worker threads, so they overlap in time and can add up to more than the "
    "wall time; predict includes waiting for the worker's model lock. The naive script's are serial "
    "wall seconds.",
    "- geoseg also writes a COG with overviews and a GeoPackage of polygons; the naive script writes "
    "only a plain tiled GeoTIFF and averages tile probabilities uniformly (geoseg: cosine weights), "
    "hence label agreement below 1.",
    "- Peak RSS: maximum over 0.1 s samples of the summed RSS of the process tree (client, scheduler "
    "and Dask workers for geoseg; pages shared between processes, e.g. torch's libraries, count once "
    "per process).",
    "- load 1m: the 1-minute load average when the side started. With as many torch threads as cores, "
    "any other busy process stalls OpenMP's spinning threads and can slow the model several-fold: "
    "compare numbers only from a quiet machine.",
]

# Appended when the run has a peers stage.
PEER_NOTES = [
    "- Peers: tiles/s = the benchmark's tile count `len(TileGrid(h, w, tile, overlap))` per wall second "
    "of the peer's whole command (interpreter start, imports and model load included), counted exactly "
    "like geoseg's; 'own total s' is the command's own timer (peers: model load to file written, no "
    "interpreter start-up or imports; geoseg: `total_s` of run.json). geoseg ÷ peer is the ratio of the "
    "tiles/s.",
    "- Peer stages are the peers' own serial wall seconds from their JSON: plain load/read/predict/"
    "stitch/write; torchgeo load/dataset/data (DataLoader)/predict/stitch/write; geoai load/infer "
    "(geoai's own timer: reading, model, blending, argmax)/predict (forward passes only, inside infer)/"
    "write.",
    "- Normalisation: plain and torchgeo use the checkpoint's `(x - mean) / std` (as geoseg); geoai "
    "divides by 255 (its own preprocessing), so its class map differs from geoseg's by design and its "
    "label agreement is not a correctness measure.",
    "- geoai visits the last row and column of windows twice, so its model runs more tiles than the grid "
    "has ('model tiles' column); its tiles/s still counts the grid's tiles.",
    "- Label agreement: fraction of pixels, valid (non-zero) in geoseg's `landcover.tif` and in the "
    "peer's output, with the same class. geoai writes the 0-based class index (untiled, uncompressed), "
    "mapped here to the checkpoint's class ids (index i → id of class i) before comparing; plain and "
    "torchgeo write class ids and average tile probabilities uniformly (geoseg: cosine weights); "
    "torchgeo's last chips run past the top/right edge instead of being shifted inside.",
    "- (b) / best peer: geoseg's tiles/s over the fastest peer's under the same allocator setting of the "
    "peers (geoseg always tunes its own workers).",
    "- Engines: geoseg runs its default `--engine auto` (OpenVINO on CPU workers, `engines_used` in its "
    "run.json); the naive script (geoseg's `Predictor`), the peers and the first two model-only rows run "
    "PyTorch (the reference); the model-only row 'engine auto' is geoseg's engine alone, as CPU workers "
    "run it (the torch-free OpenVINO predictor: normalisation and softmax inside the OpenVINO graph). "
    "(b)/(a) is given against both ceilings.",
]


class BenchmarkError(RuntimeError):
    """A side crashed or produced no (or wrong) output."""


@dataclass
class BenchConfig:
    """Parameters shared by all sides of one benchmark run."""

    sizes: list[int]
    tile: int = 512
    overlap: int = 64
    batch: int = 8
    workers: int = 1
    threads_per_worker: int = 2
    torch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    model: Path | None = None
    stand_in_encoder: str | None = None
    model_batches: int = 5
    warmup: int = 1
    cache: Path | None = None
    keep: Path | None = None
    timeout_s: float = 6 * 3600
    peers: int | None = None  # scene size of the peers stage (None: no peers)
    peers_python: Path = PEERS_PYTHON
    engine: str = "auto"  # geoseg's inference engine (the model-only ceiling is measured with torch too)
    device: str = "cpu"  # geoseg's --device (benchmarks/gpu.py runs it on cuda)


@dataclass
class SideRun:
    """One subprocess: wall time, peak RSS of its process tree and the MALLOC_* env of each process role."""

    side: str
    allocator: str
    wall_s: float
    peak_rss_mib: float
    peak_rss_by_role_mib: dict[str, float]
    max_processes: int
    malloc_env: dict[str, str]
    thread_env: dict[str, str]
    load_avg_1m: float
    report: dict


# --------------------------------------------------------------------------- process-tree sampling


def _role(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "main"
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "resource_tracker" in cmd:
        return "resource_tracker"
    if "spawn_main" in cmd or "multiprocessing-fork" in cmd:
        return "worker"
    return "other"


def _format_env(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none)"


class TreeSampler(threading.Thread):
    """Polls a process and all its descendants; keeps the max of their summed RSS."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.peak_by_role: dict[str, int] = {}
        self.max_procs = 0
        # per process: (role, MALLOC_* env, thread env) as of its latest program (a process that
        # restarts itself with execve, as ``geoseg run`` does to set the allocator, is read again)
        self._env_of: dict[int, tuple[str, str, str]] = {}
        self._stop_event = threading.Event()

    @property
    def envs(self) -> dict[str, set[str]]:
        """MALLOC_* settings by process role."""
        return self._by_role(1)

    @property
    def thread_envs(self) -> dict[str, set[str]]:
        """OMP_*/MKL_*/OPENBLAS_* settings by process role."""
        return self._by_role(2)

    def _by_role(self, field: int) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for entry in self._env_of.values():
            out.setdefault(entry[0], set()).add(entry[field])
        return out

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total, by_role = 0, {}
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                role = _role(p, self.pid)
                total += rss
                by_role[role] = by_role.get(role, 0) + rss
                try:
                    env = p.environ()  # read each poll: a process may restart itself with another env
                except psutil.Error:
                    env = None
                if env is not None:
                    malloc = {k: v for k, v in env.items() if k.startswith("MALLOC_")}
                    threads = {k: v for k, v in env.items() if k.startswith(THREAD_ENV_PREFIXES)}
                    self._env_of[p.pid] = (role, _format_env(malloc), _format_env(threads))
            self.peak = max(self.peak, total)
            for role, rss in by_role.items():
                self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)
            self.max_procs = max(self.max_procs, len(procs))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def side_env(allocator: bool, threads: int) -> dict[str, str]:
    """The parent's environment without MALLOC_*, plus the allocator settings when ``allocator``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if allocator:
        env |= ALLOCATOR_ENV
    return env


def run_side(
    side: str,
    allocator: str,
    cmd: list[str],
    env: dict[str, str],
    timeout_s: float,
    report_file: Path | None = None,
) -> SideRun:
    """Run ``cmd`` while sampling its process tree; raise ``BenchmarkError`` if it fails."""
    load = os.getloadavg()[0]
    print(f"  {side} ({allocator}) ...", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # Own session, so a timeout or Ctrl-C can end the side's whole process group (Dask workers too).
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise BenchmarkError(
            f"{side} timed out after {timeout_s:.0f} s: {shlex.join(cmd)}\n{err[-4000:]}"
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
    if proc.returncode != 0:
        raise BenchmarkError(
            f"{side} failed with exit status {proc.returncode}: {shlex.join(cmd)}\n"
            f"--- stderr (tail) ---\n{err[-4000:]}\n--- stdout (tail) ---\n{out[-2000:]}"
        )
    print(f" {wall:.1f} s, peak RSS {sampler.peak / MIB:.0f} MiB", file=sys.stderr, flush=True)
    report = json.loads(report_file.read_text()) if report_file else {}
    return SideRun(
        side=side,
        allocator=allocator,
        wall_s=wall,
        peak_rss_mib=sampler.peak / MIB,
        peak_rss_by_role_mib={r: v / MIB for r, v in sorted(sampler.peak_by_role.items()) if v},
        max_processes=sampler.max_procs,
        malloc_env={r: "; ".join(sorted(v)) for r, v in sorted(sampler.envs.items())},
        thread_env={r: "; ".join(sorted(v)) for r, v in sorted(sampler.thread_envs.items())},
        load_avg_1m=load,
        report=report,
    )


# --------------------------------------------------------------------------- the three sides


def allocator_label(tuned: bool) -> str:
    return "tuned" if tuned else "default"


def model_args(cfg: BenchConfig, model: Path) -> list[str]:
    """The model, tile, overlap and batch options every side gets, identically."""
    return [
        "--model",
        str(model),
        "--tile",
        str(cfg.tile),
        "--overlap",
        str(cfg.overlap),
        "--batch",
        str(cfg.batch),
    ]


def run_model_only(
    cfg: BenchConfig, model: Path, scene: Path, tuned: bool, work: Path, engine: str = "torch"
) -> SideRun:
    out = work / f"model_only_{allocator_label(tuned)}_{engine}.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "model_only.py"),
        "--scene",
        str(scene),
        *model_args(cfg, model),
        "--batches",
        str(cfg.model_batches),
        "--warmup",
        str(cfg.warmup),
        "--torch-threads",
        str(cfg.torch_threads),
        "--engine",
        engine,
        "--json",
        str(out),
    ]
    return run_side(
        "model_only", allocator_label(tuned), cmd, side_env(tuned, cfg.torch_threads), cfg.timeout_s, out
    )


def run_geoseg(cfg: BenchConfig, model: Path, scene: Path, out: Path) -> SideRun:
    """``geoseg run`` from a plain environment (no MALLOC_*); geoseg itself tunes its workers."""
    cmd = [
        sys.executable,
        "-m",
        "geoseg",
        "run",
        str(scene),
        "--out",
        str(out),
        *model_args(cfg, model),
        "--workers",
        str(cfg.workers),
        "--threads-per-worker",
        str(cfg.threads_per_worker),
        "--torch-threads",
        str(cfg.torch_threads),
        "--device",
        cfg.device,
        "--engine",
        cfg.engine,
        "--no-resample",
        "--overwrite",
        "--no-progress",
    ]
    run = run_side(
        "geoseg", "workers tuned by geoseg", cmd, side_env(False, cfg.torch_threads), cfg.timeout_s
    )
    for name in ("landcover.tif", "geoseg.gpkg", "run.json"):
        if not (out / name).is_file() or (out / name).stat().st_size == 0:
            raise BenchmarkError(f"geoseg run exited 0 but wrote no {out / name}")
    item = json.loads((out / "run.json").read_text())
    try:
        run.report = dict(item["properties"]["geoseg:timing"])
    except (KeyError, TypeError):
        raise BenchmarkError(f"{out / 'run.json'} has no properties['geoseg:timing']") from None
    return run


def script_command(
    cfg: BenchConfig, python: Path, script: Path, scene: Path, out: Path, model: Path, report: Path
) -> list[str]:
    """Command line of a whole-scene script (naive.py, a peer): benchmarks/side_cli.py's options."""
    return [
        str(python),
        str(script),
        str(scene),
        str(out),
        *model_args(cfg, model),
        "--torch-threads",
        str(cfg.torch_threads),
        "--json",
        str(report),
    ]


def run_naive(cfg: BenchConfig, model: Path, scene: Path, out: Path, tuned: bool, work: Path) -> SideRun:
    report = work / f"naive_{allocator_label(tuned)}.json"
    cmd = script_command(
        cfg, Path(sys.executable), ROOT / "benchmarks" / "naive.py", scene, out, model, report
    )
    run = run_side(
        "naive", allocator_label(tuned), cmd, side_env(tuned, cfg.torch_threads), cfg.timeout_s, report
    )
    if not out.is_file():
        raise BenchmarkError(f"naive script exited 0 but wrote no {out}")
    return run


def check_peers_python(cfg: BenchConfig) -> None:
    """Fail fast (before anything runs) when peers were asked for but their venv is missing."""
    if cfg.peers is not None and not Path(cfg.peers_python).is_file():
        raise BenchmarkError(
            f"--peers needs the peers venv's python {cfg.peers_python}, which does not exist: "
            "run `make peers-venv` (or pass --peers-python)"
        )


def peer_versions(python: Path) -> dict[str, str]:
    """Versions of torch, torchgeo and geoai-py in the peers' interpreter (metadata only, no imports)."""
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({p: m.version(p) for p in ('torch', 'torchgeo', 'geoai-py')}))"
    )
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise BenchmarkError(
            f"{python} lacks torch/torchgeo/geoai-py (run `make peers-venv`):\n{res.stderr[-2000:]}"
        )
    return json.loads(res.stdout)


def run_peer(
    cfg: BenchConfig, model: Path, scene: Path, name: str, out: Path, tuned: bool, work: Path
) -> SideRun:
    """One peer script of ``benchmarks/peers`` in the peers' interpreter, with or without the allocator."""
    script, _ = PEERS[name]
    report = work / f"{name}_{allocator_label(tuned)}.json"
    cmd = script_command(cfg, cfg.peers_python, PEERS_DIR / script, scene, out, model, report)
    run = run_side(
        name, allocator_label(tuned), cmd, side_env(tuned, cfg.torch_threads), cfg.timeout_s, report
    )
    if not out.is_file():
        raise BenchmarkError(f"peer {name} exited 0 but wrote no {out}")
    return run


# --------------------------------------------------------------------------- checks and results


def check_raster(path: Path, shape: tuple[int, int]) -> None:
    with rasterio.open(path) as ds:
        if (ds.height, ds.width) != shape or ds.count != 1:
            raise BenchmarkError(
                f"{path}: {ds.count} band(s) of {ds.height}x{ds.width}, expected 1 of {shape}"
            )


def label_agreement(a: Path, b: Path, rows: int = 1024, b_lut: np.ndarray | None = None) -> float:
    """Fraction of pixels labelled valid (non-zero) in both rasters that carry the same class.

    Read in strips; ``b_lut`` (256 uint8 entries) first maps ``b``'s values, e.g. class index → class id.
    """
    same = total = 0
    with rasterio.open(a) as da, rasterio.open(b) as db:
        for r0 in range(0, da.height, rows):
            win = RioWindow(0, r0, da.width, min(rows, da.height - r0))
            la, lb = da.read(1, window=win), db.read(1, window=win)
            if b_lut is not None:
                lb = b_lut[lb]
            valid = (la != 0) & (lb != 0)
            same += int(np.count_nonzero((la == lb) & valid))
            total += int(np.count_nonzero(valid))
    return same / total if total else float("nan")


def tiles_per_s(tiles: int, run: SideRun) -> float:
    return tiles / run.wall_s


def class_index_lut(model: Path) -> np.ndarray:
    """Lookup table 0-based class index → the checkpoint's class id (0 for indexes past the classes)."""
    from geoseg.models.checkpoint import read_checkpoint_meta

    meta, _ = read_checkpoint_meta(model)
    lut = np.zeros(256, np.uint8)
    lut[: len(meta.classes)] = [c.id for c in meta.classes]
    return lut


def run_peers(
    cfg: BenchConfig,
    model: Path,
    scene: Path,
    shape: tuple[int, int],
    tiles: int,
    geoseg: SideRun,
    geoseg_out: Path,
    work: Path,
    geoseg_reused: bool,
) -> dict:
    """Each peer twice (allocator tuned, default) on ``scene``; compared with ``geoseg``'s run on it."""
    versions = peer_versions(cfg.peers_python)
    lut = class_index_lut(model)
    megapixels = shape[0] * shape[1] / 1e6
    geoseg_rate = tiles_per_s(tiles, geoseg)
    runs: dict[str, dict] = {}
    for name in PEERS:
        for tuned in (True, False):
            key = f"{name}_{allocator_label(tuned)}"
            out = work / f"{key}.tif"
            run = run_peer(cfg, model, scene, name, out, tuned, work)
            check_raster(out, shape)
            if run.report.get("tiles") != tiles:
                raise BenchmarkError(
                    f"peer {name} reports {run.report.get('tiles')} tiles, the grid has {tiles}"
                )
            model_tiles = run.report.get("model_tiles", run.report.get("chips", tiles))
            if model_tiles < tiles:  # e.g. torchgeo's sampler yields no chip on a one-tile scene
                raise BenchmarkError(
                    f"peer {name} ran the model on {model_tiles} tiles, fewer than the grid's {tiles}: "
                    f"its output {out.name} is incomplete"
                )
            rate = tiles_per_s(tiles, run)
            agreement = label_agreement(
                geoseg_out / "landcover.tif", out, b_lut=lut if name in PEERS_WRITING_CLASS_INDEX else None
            )
            runs[key] = asdict(run) | {
                "peer": name,
                "script": f"benchmarks/peers/{PEERS[name][0]}",
                "tiles_per_s": rate,
                "megapixels_per_s": megapixels / run.wall_s,
                "geoseg_over_peer": geoseg_rate / rate,
                "model_tiles": model_tiles,
                "label_agreement_with_geoseg": agreement,
            }
    ratios: dict[str, object] = {}
    for alloc in ("default", "tuned"):
        best = max((r for r in runs.values() if r["allocator"] == alloc), key=lambda r: r["tiles_per_s"])
        ratios[f"best_peer_{alloc}"] = best["peer"]
        ratios[f"geoseg_over_best_peer_{alloc}"] = geoseg_rate / best["tiles_per_s"]
    return {
        "size": cfg.peers,
        "scene": str(scene),
        "shape": list(shape),
        "tiles": tiles,
        "megapixels": megapixels,
        "python": str(cfg.peers_python),
        "versions": versions,
        "geoseg": asdict(geoseg)
        | {
            "tiles_per_s": geoseg_rate,
            "megapixels_per_s": megapixels / geoseg.wall_s,
            "reused": geoseg_reused,
        },
        "runs": runs,
        "ratios": ratios,
    }


def stand_in_checkpoint(path: Path, encoder: str = "mobilenet_v2") -> Path:
    """An untrained Unet checkpoint: the bundled model's architecture (when the bundled file is missing), or
    smp's default Unet on another ``encoder`` (e.g. the issue's reference Unet-resnet18)."""
    import torch

    from geoseg.models import CheckpointMeta, ClassInfo, build_model, save_checkpoint
    from geoseg.models.checkpoint import Normalization

    torch.manual_seed(0)
    arch_kwargs = {"decoder_channels": [128, 64, 32, 16, 16]} if encoder == "mobilenet_v2" else {}
    names = ["building", "land", "road", "vegetation", "water"]
    colors = ["#E3342F", "#D9C8A9", "#6C6C6C", "#38A169", "#3182CE"]
    meta = CheckpointMeta(
        task="landcover",
        arch="unet",
        encoder=encoder,
        arch_kwargs=arch_kwargs,
        in_channels=3,
        bands=["red", "green", "blue"],
        input_dtype="uint8",
        value_range=(0, 255),
        normalization=Normalization(mean=[120.0, 120.0, 120.0], std=[60.0, 60.0, 60.0]),
        classes=[
            ClassInfo(id=i, name=n, color=c) for i, n, c in zip(range(1, 6), names, colors, strict=True)
        ],
        tile_size=512,
        gsd_m=1.0,
        gsd_tolerance=2.0,
        notes="geoseg benchmark stand-in: untrained weights",
    )
    return save_checkpoint(build_model("unet", encoder, 3, len(names), **arch_kwargs), meta, path)


def resolve_model(cfg: BenchConfig, tmp: Path) -> tuple[Path, str]:
    if cfg.model is not None:
        return cfg.model.resolve(), "given"
    if cfg.stand_in_encoder is not None:
        path = stand_in_checkpoint(tmp / f"stand_in_unet_{cfg.stand_in_encoder}.pt", cfg.stand_in_encoder)
        return path, f"stand-in Unet-{cfg.stand_in_encoder} (untrained: timing only)"
    if BUNDLED_MODEL.is_file():
        return BUNDLED_MODEL, "bundled"
    print(
        f"{BUNDLED_MODEL} is missing: using an untrained stand-in of the same architecture", file=sys.stderr
    )
    return stand_in_checkpoint(tmp / "stand_in_landcover_rgb.pt"), "stand-in (untrained, same architecture)"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine_info() -> dict[str, object]:
    """The machine every result file names: CPU model and the ISA flags that decide precision and speed."""
    import torch

    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "isa": cpu["isa"],
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_geoseg_checked(
    cfg: BenchConfig, model: Path, scene: Path, shape: tuple[int, int], tiles: int, out: Path
) -> SideRun:
    """``run_geoseg``, then check its class raster's shape and that it ran the benchmark's tiles."""
    geoseg = run_geoseg(cfg, model, scene, out)
    check_raster(out / "landcover.tif", shape)
    if geoseg.report.get("tiles", tiles) != tiles:
        raise BenchmarkError(f"geoseg ran {geoseg.report['tiles']} tiles, the benchmark counts {tiles}")
    return geoseg


def run_benchmark(cfg: BenchConfig) -> dict:
    """Run all sides for every scene size (and the peers stage); returns a JSON-serialisable dict."""
    check_peers_python(cfg)
    cache = cfg.cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    scenes = {size: scene_path(size, cache) for size in cfg.sizes}
    peer_scene = scene_path(cfg.peers, cache) if cfg.peers is not None else None
    results: dict = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "machine": machine_info(),
        "git": git_commit(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "allocator_env": ALLOCATOR_ENV,
    }
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-", dir=cache) as tmp_name:
        tmp = Path(tmp_name)
        model, model_kind = resolve_model(cfg, tmp)
        results["model"] = {"path": str(model), "kind": model_kind, "sha256": file_sha256(model)}

        print(f"model-only ceiling on tiles of {scenes[cfg.sizes[0]].name}", file=sys.stderr)
        model_runs = {
            allocator_label(t): run_model_only(cfg, model, scenes[cfg.sizes[0]], t, tmp)
            for t in (True, False)
        }
        if cfg.engine != "torch":  # the ceiling of the engine geoseg runs, beside the torch reference
            model_runs[f"tuned, engine {cfg.engine}"] = run_model_only(
                cfg, model, scenes[cfg.sizes[0]], True, tmp, cfg.engine
            )
        results["model_only"] = {k: asdict(v) for k, v in model_runs.items()}
        ceiling = model_runs["tuned"].report["tiles_per_s"]
        same_engine = model_runs.get(f"tuned, engine {cfg.engine}", model_runs["tuned"])
        ceiling_same_engine = same_engine.report["tiles_per_s"]

        results["scenes"] = []
        for size, scene in scenes.items():
            with rasterio.open(scene) as ds:
                shape = (ds.height, ds.width)
            tiles = len(TileGrid(*shape, cfg.tile, cfg.overlap))
            megapixels = shape[0] * shape[1] / 1e6
            print(f"scene {scene.name}: {shape[0]}x{shape[1]}, {tiles} tiles", file=sys.stderr)
            work = tmp / f"scene_{size}"
            work.mkdir()
            geoseg_out = work / "geoseg"
            geoseg = run_geoseg_checked(cfg, model, scene, shape, tiles, geoseg_out)
            naive = {}
            for tuned in (True, False):
                out = work / f"naive_{allocator_label(tuned)}.tif"
                naive[allocator_label(tuned)] = run_naive(cfg, model, scene, out, tuned, work)
                check_raster(out, shape)
            agreement = label_agreement(geoseg_out / "landcover.tif", work / "naive_tuned.tif")
            if size == cfg.peers:  # the peers stage reuses this scene's geoseg run
                print(f"peers on {scene.name} (geoseg run above reused)", file=sys.stderr)
                results["peers"] = run_peers(cfg, model, scene, shape, tiles, geoseg, geoseg_out, work, True)
            if cfg.keep is not None:
                dest = cfg.keep / f"scene_{size}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                work.rename(dest)
            sides = {"geoseg": geoseg, "naive_tuned": naive["tuned"], "naive_default": naive["default"]}
            rates = {name: tiles_per_s(tiles, run) for name, run in sides.items()}
            results["scenes"].append(
                {
                    "size": size,
                    "scene": str(scene),
                    "shape": list(shape),
                    "tiles": tiles,
                    "megapixels": megapixels,
                    "sides": {
                        name: asdict(run)
                        | {"tiles_per_s": rates[name], "megapixels_per_s": megapixels / run.wall_s}
                        for name, run in sides.items()
                    },
                    "ratios": {
                        "geoseg_over_model_only": rates["geoseg"] / ceiling,
                        "geoseg_over_model_only_same_engine": rates["geoseg"] / ceiling_same_engine,
                        "geoseg_over_naive_tuned": rates["geoseg"] / rates["naive_tuned"],
                        "geoseg_over_naive_default": rates["geoseg"] / rates["naive_default"],
                        "naive_tuned_rss_over_geoseg_rss": naive["tuned"].peak_rss_mib / geoseg.peak_rss_mib,
                    },
                    "label_agreement_geoseg_vs_naive": agreement,
                }
            )
            if cfg.keep is None:
                _rmtree(work)
        if peer_scene is not None and cfg.peers not in scenes:
            with rasterio.open(peer_scene) as ds:
                shape = (ds.height, ds.width)
            tiles = len(TileGrid(*shape, cfg.tile, cfg.overlap))
            print(f"peers on {peer_scene.name}: {shape[0]}x{shape[1]}, {tiles} tiles", file=sys.stderr)
            work = tmp / f"peers_{cfg.peers}"
            work.mkdir()
            geoseg_out = work / "geoseg"
            geoseg = run_geoseg_checked(cfg, model, peer_scene, shape, tiles, geoseg_out)
            results["peers"] = run_peers(
                cfg, model, peer_scene, shape, tiles, geoseg, geoseg_out, work, False
            )
            if cfg.keep is not None:
                dest = cfg.keep / f"peers_{cfg.peers}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                work.rename(dest)
            else:
                _rmtree(work)
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return results


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- reporting


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


PEER_STAGES = ("load_s", "read_s", "dataset_s", "data_s", "infer_s", "predict_s", "stitch_s", "write_s")


def _peer_stages(report: dict) -> str:
    return " / ".join(f"{k[:-2]} {report[k]:.1f}" for k in PEER_STAGES if report.get(k) is not None) or "–"


def format_peers(peers: dict) -> list[str]:
    """Markdown of the peers stage: one row per peer and allocator, geoseg's run on top."""
    v = peers["versions"]
    g = peers["geoseg"]
    lines = [
        f"### (d) Peers on the {peers['size']}² scene, side by side with (b)",
        "",
        f"{peers['tiles']} tiles (`TileGrid`), `{Path(peers['python']).parent.parent.name}` python: "
        f"torch {v.get('torch', '?')}, torchgeo {v.get('torchgeo', '?')}, geoai-py {v.get('geoai-py', '?')}. "
        f"geoseg row: `geoseg run` on the same scene in this run"
        f"{' (the (b) run above)' if g.get('reused') else ''}.",
        "",
        "| side | allocator | wall s | tiles/s | geoseg ÷ peer | peak RSS MiB | model tiles | own total s "
        "| stages s (own report) | label agreement with geoseg | load 1m |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        f"| geoseg | {g['allocator']} | {g['wall_s']:.1f} | {_f(g['tiles_per_s'])} | 1.00 | "
        f"{g['peak_rss_mib']:.0f} | {peers['tiles']} | {_f(g['report'].get('total_s'), 1)} | "
        + " / ".join(
            f"{k} {_f(g['report'].get(f'{k}_s'), 1)}"
            for k in ("read", "predict", "stitch", "write", "vectorize")
        )
        + f" (summed task s) | – | {g['load_avg_1m']:.1f} |",
    ]
    for run in peers["runs"].values():
        r = run["report"]
        lines.append(
            f"| {run['peer']} | {run['allocator']} | {run['wall_s']:.1f} | {_f(run['tiles_per_s'])} | "
            f"{_f(run['geoseg_over_peer'])} | {run['peak_rss_mib']:.0f} | {run['model_tiles']} | "
            f"{_f(r.get('total_s'), 1)} | {_peer_stages(r)} | {_f(run['label_agreement_with_geoseg'], 3)} | "
            f"{run['load_avg_1m']:.1f} |"
        )
    return lines


def format_peer_ratios(peers: dict) -> list[str]:
    """The two issue targets: geoseg over the fastest peer without and with the allocator setting."""
    ra = peers["ratios"]
    return [
        "",
        f"Peers on the {peers['size']}² scene ((b): `geoseg run` there; tiles/s per command wall second):",
        "",
        "| scene | (b) / best peer default (target ≥ 2) | best peer default | (b) / best peer tuned "
        "(target ≥ 1.3) | best peer tuned |",
        "|---|---:|---|---:|---|",
        f"| {peers['size']}² | {ra['geoseg_over_best_peer_default']:.2f} | {ra['best_peer_default']} | "
        f"{ra['geoseg_over_best_peer_tuned']:.2f} | {ra['best_peer_tuned']} |",
    ]


def format_tables(results: dict) -> str:
    """Markdown tables of the results (also what is printed to the terminal)."""
    cfg = results["config"]
    lines = [
        "### (a) Model-only ceiling",
        "",
        f"`predict` (torch `Predictor`; 'engine auto': the torch-free OpenVINO predictor) on one pre-built "
        f"batch of {cfg['batch']} real {cfg['tile']}² tiles, {cfg['warmup']} warm-up + "
        f"{cfg['model_batches']} timed batches, {cfg['torch_threads']} threads.",
        "",
        "| allocator | MALLOC_* env | tiles/s | median batch s | peak RSS MiB | load 1m |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, run in results["model_only"].items():
        r = run["report"]
        lines.append(
            f"| {name} | {run['malloc_env'].get('main', '?')} | {_f(r['tiles_per_s'])} | "
            f"{_f(r['median_batch_s'])} | {run['peak_rss_mib']:.0f} | {run['load_avg_1m']:.1f} |"
        )
    lines += [
        "",
        "### (b) `geoseg run` and (c) naive script, per scene",
        "",
        "| scene | tiles | side | allocator | wall s | tiles/s | MP/s | peak RSS MiB | read s | predict s "
        "| stitch s | write s | vectorize s | load 1m |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in results["scenes"]:
        for run in sc["sides"].values():
            r = run["report"]
            lines.append(
                f"| {sc['size']}² | {sc['tiles']} | {run['side']} | {run['allocator']} | "
                f"{run['wall_s']:.1f} | "
                f"{_f(run['tiles_per_s'])} | {_f(run['megapixels_per_s'])} | {run['peak_rss_mib']:.0f} | "
                f"{_f(r.get('read_s'), 1)} | {_f(r.get('predict_s'), 1)} | {_f(r.get('stitch_s'), 1)} | "
                f"{_f(r.get('write_s'), 1)} | {_f(r.get('vectorize_s'), 1)} | {run['load_avg_1m']:.1f} |"
            )
    peers = results.get("peers")
    if peers:
        lines += ["", *format_peers(peers)]
    lines += [
        "",
        "### Ratios",
        "",
        "| scene | (b)/(a) tiles/s, (a) = torch | (b)/(a), (a) = geoseg's engine | (b)/(c tuned) "
        "| (b)/(c default) | peak RSS MiB geoseg / naive tuned / naive default | label agreement b vs c |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for sc in results["scenes"]:
        ra, s = sc["ratios"], sc["sides"]
        rss = " / ".join(f"{s[k]['peak_rss_mib']:.0f}" for k in ("geoseg", "naive_tuned", "naive_default"))
        same = ra.get("geoseg_over_model_only_same_engine", ra["geoseg_over_model_only"])
        lines.append(
            f"| {sc['size']}² | {ra['geoseg_over_model_only']:.2f} | {same:.2f} | "
            f"{ra['geoseg_over_naive_tuned']:.2f} | "
            f"{ra['geoseg_over_naive_default']:.2f} | {rss} | "
            f"{sc['label_agreement_geoseg_vs_naive']:.3f} |"
        )
    if peers:
        lines += format_peer_ratios(peers)
    lines += [
        "",
        "geoseg peak RSS by process role (MiB, each role's own peak; main = the `geoseg` command itself: "
        "client, scheduler and nannies):",
        "",
    ]
    for sc in results["scenes"]:
        roles = sc["sides"]["geoseg"]["peak_rss_by_role_mib"]
        lines.append(f"- {sc['size']}²: " + ", ".join(f"{r} {v:.0f}" for r, v in roles.items()))
    env_rows = {("model_only", k): v for k, v in results["model_only"].items()}
    for sc in results["scenes"][:1]:
        env_rows |= {(v["side"], v["allocator"]): v for v in sc["sides"].values()}
    if peers:
        env_rows.setdefault(("geoseg", peers["geoseg"]["allocator"]), peers["geoseg"])
        env_rows |= {(v["peer"], v["allocator"]): v for v in peers["runs"].values()}
    lines += [
        "",
        "### Allocator (MALLOC_*) and threading environment of each side, read from /proc of its processes",
        "",
        "| side | setting | process role: MALLOC_* at start | process role: OMP_*/MKL_*/OPENBLAS_* |",
        "|---|---|---|---|",
    ]
    for (side, alloc), run in env_rows.items():
        malloc = "<br>".join(f"{r}: {e}" for r, e in run["malloc_env"].items())
        threads = "<br>".join(f"{r}: {e}" for r, e in run.get("thread_env", {}).items())
        lines.append(f"| {side} | {alloc} | {malloc} | {threads} |")
    return "\n".join(lines)


def format_markdown(results: dict, command: str, note: str | None) -> str:
    cfg, m, model = results["config"], results["machine"], results["model"]
    head = ["# geoseg benchmark results", ""]
    if note:
        head += [f"> **{note}**", ""]
    head += [
        "Command (from the repository root):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- date: {results['started']} – {results['finished']}, git {results['git']}",
        f"- machine: {m['cpu']} (ISA: {', '.join(m.get('isa', [])) or 'not recorded'}), {m['cores']} cores, "
        f"{m['ram_gib']} GiB RAM, {m['os']}; "
        f"Python {m['python']}, torch {m['torch']}; load average at start {m['load_avg_at_start']}",
        f"- model: `{Path(model['path']).name}` ({model['kind']}), sha256 {model['sha256'][:12]}",
        f"- settings: tile {cfg['tile']}, overlap {cfg['overlap']}, batch {cfg['batch']}, "
        f"{cfg['torch_threads']} torch threads on every side; geoseg: {cfg['workers']} worker(s) x "
        f"{cfg['threads_per_worker']} threads, `--no-resample --device cpu`",
        f"- scenes: Kampala sample mirror-tiled to {', '.join(f'{s}²' for s in cfg['sizes'])} px "
        "(3-band uint8, 256² tiled deflate GeoTIFF, EPSG:3857); tiles = `len(TileGrid(h, w, tile, overlap))`",
        "",
    ]
    if results.get("peers"):
        pr = results["peers"]
        head.insert(
            -1,
            f"- peers: {', '.join(f'`benchmarks/peers/{script}`' for script, _ in PEERS.values())} on the "
            f"{pr['size']}² scene, each with and without the allocator setting, same model/tile/overlap/"
            f"batch/torch threads, run by `{Path(pr['python']).parent.parent.name}/bin/python`",
        )
    notes = ["", "### How to read this", "", *READING_NOTES, *(PEER_NOTES if results.get("peers") else [])]
    return "\n".join([*head, format_tables(results), *notes]) + "\n"


def parse_args(argv: list[str] | None) -> tuple[BenchConfig, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2048,8192,16384", help="comma-separated scene sizes in pixels")
    ap.add_argument(
        "--short", action="store_true", help=f"CI form: one {SHORT_SIZE}² scene, batch 4 by default"
    )
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument(
        "--batch", type=int, default=None, help="tiles per forward pass (default 8; 4 with --short)"
    )
    ap.add_argument("--workers", type=int, default=1, help="geoseg LocalCluster workers")
    ap.add_argument("--threads-per-worker", type=int, default=2)
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1, help="on every side")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled one)")
    ap.add_argument(
        "--stand-in",
        default=None,
        metavar="ENCODER",
        help="time an untrained smp Unet with this encoder instead (e.g. resnet18, the issue's reference)",
    )
    ap.add_argument("--model-batches", type=int, default=5, help="timed batches of the model-only side")
    ap.add_argument("--engine", default="auto", help="geoseg's --engine (default: auto)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="scene cache (default $GEOSEG_BENCH_CACHE or ~/.cache/geoseg-bench)",
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep every side's outputs in this folder")
    ap.add_argument(
        "--results", type=Path, default=None, help="write markdown here (and raw JSON next to it)"
    )
    ap.add_argument("--note", default=None, help="a line shown at the top of the markdown")
    ap.add_argument(
        "--peers",
        type=int,
        default=None,
        metavar="SIZE",
        help="also run the peer scripts of benchmarks/peers (tuned and default allocator) and one geoseg run "
        "on the SIZE² scene (reused from --sizes when listed there); default: no peers",
    )
    ap.add_argument(
        "--peers-python",
        type=Path,
        default=PEERS_PYTHON,
        help="interpreter for the peers (default .venv-peers/bin/python, built by `make peers-venv`)",
    )
    args = ap.parse_args(argv)
    sizes = [SHORT_SIZE] if args.short else [int(s) for s in args.sizes.split(",") if s.strip()]
    batch = args.batch or (4 if args.short else 8)
    cfg = BenchConfig(
        sizes=sizes,
        tile=args.tile,
        overlap=args.overlap,
        batch=batch,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        torch_threads=args.torch_threads,
        model=args.model,
        stand_in_encoder=args.stand_in,
        model_batches=args.model_batches,
        cache=args.cache,
        keep=args.keep,
        peers=args.peers,
        peers_python=args.peers_python.expanduser().absolute(),  # not resolve(): keep the venv's symlink
        engine=args.engine,
    )
    return cfg, args


def main(argv: list[str] | None = None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg, args = parse_args(argv)
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        results = run_benchmark(cfg)
    except BenchmarkError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    results["command"] = command
    print(format_tables(results))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(format_markdown(results, command, args.note))
        args.results.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {args.results} and {args.results.with_suffix('.json')}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
