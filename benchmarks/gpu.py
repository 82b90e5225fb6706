"""GPU benchmark: the model-only ceiling and ``geoseg run`` end to end on one CUDA device, with the GPU's
utilisation sampled throughout (NVML through ``nvidia-smi``).

(a) model-only: geoseg's ``Predictor.predict`` (uint8 tiles in host memory → float16 probabilities back
in host memory) for each model × batch size × autocast precision × memory layout × cuDNN autotuner.
(b) ``geoseg run --device cuda`` on the benchmark scenes for a few worker/thread layouts. Each result is
written as soon as it exists, and runs stop starting once ``--budget-s`` has passed, so a short lease
still leaves a result.

    python -m benchmarks.gpu --out DIR [--sizes 8192,16384] [--budget-s 420]
    python -m benchmarks.gpu --format DIR/gpu.json > benchmarks/RESULTS_gpu.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.run import (
    BUNDLED_MODEL,
    BenchConfig,
    BenchmarkError,
    _f,
    git_commit,
    machine_info,
    run_geoseg_checked,
    stand_in_checkpoint,
)
from benchmarks.scenes import ROOT, scene_path
from tiles import TileGrid

SMI_FIELDS = "utilization.gpu,memory.used"
DEFAULT_VARIANTS = [
    f"{p}:{layout}:{tuner}"
    for tuner in ("notune", "tune")
    for p in ("fp32", "fp16", "bf16")
    for layout in ("cl", "nchw")
]
# A cold process, step by step: where a worker's first forward pass spends its time on a GPU.
STARTUP_PROBE = """
import json, sys, time
t = {}; t0 = time.perf_counter()
def mark(k): t[k] = round(time.perf_counter() - t0, 3)
import torch; mark("import_torch")
torch.zeros(1, device=sys.argv[1]); torch.cuda.synchronize(); mark("cuda_context")
import geoseg.inference.predictor; mark("import_geoseg_infer")
import segmentation_models_pytorch; mark("import_smp")
from geoseg.inference.predictor import get_predictor
p = get_predictor(sys.argv[2], sys.argv[1], 0, "torch", True)
torch.cuda.synchronize(); mark("model_on_device")
import numpy as np
x = np.random.default_rng(0).integers(0, 255, (8, 3, 512, 512), dtype=np.uint8)
v = np.ones((8, 512, 512), bool)
p.predict(x, v); mark("first_batch"); p.predict(x, v); mark("second_batch")
print(json.dumps(t))
"""


class GpuSampler(threading.Thread):
    """``nvidia-smi`` polled every ``interval_ms``: (time, utilisation %, memory MiB) samples."""

    def __init__(self, interval_ms: int = 100) -> None:
        super().__init__(daemon=True)
        cmd = [
            "nvidia-smi",
            f"--query-gpu={SMI_FIELDS}",
            "--format=csv,noheader,nounits",
            f"-lms={interval_ms}",
        ]
        self.samples: list[tuple[float, float, float]] = []
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:  # no NVIDIA driver (a CPU smoke run): no samples
            self.proc = None

    def run(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            try:
                util, mem = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.monotonic(), util, mem))

    def window(self, t0: float, t1: float) -> dict[str, float | int | None]:
        """Mean and max utilisation and peak memory of the samples between ``t0`` and ``t1``."""
        picked = [s for s in self.samples if t0 <= s[0] <= t1]
        if not picked:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_peak_mib": None, "samples": 0}
        return {
            "gpu_util_mean": round(sum(s[1] for s in picked) / len(picked), 1),
            "gpu_util_max": max(s[1] for s in picked),
            "gpu_mem_peak_mib": max(s[2] for s in picked),
            "samples": len(picked),
        }

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def parse_variant(text: str) -> tuple[str, bool, bool]:
    precision, layout, tuner = text.split(":")
    if (
        precision not in ("fp32", "fp16", "bf16")
        or layout not in ("cl", "nchw")
        or tuner not in ("tune", "notune")
    ):
        raise ValueError(f"bad variant {text!r}: PRECISION:LAYOUT:TUNER, e.g. fp16:cl:tune")
    return precision, layout == "cl", tuner == "tune"


def startup_probe(device: str) -> dict:
    """Seconds from a cold process's start to each step of its first forward passes (bundled model)."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    }
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, device, str(BUNDLED_MODEL)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  start-up: {steps}", file=sys.stderr, flush=True)
    return steps


def gpu_info() -> dict[str, object]:
    import torch

    if not torch.cuda.is_available():
        return {
            "name": None,
            "multiprocessors": None,
            "nvidia_smi": "no CUDA device",
            "torch_cuda": None,
            "cudnn": None,
        }
    props = torch.cuda.get_device_properties(0)
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "name": props.name,
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "nvidia_smi": smi,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def model_only(
    models: dict[str, Path],
    scene: Path,
    batches: list[int],
    variants: list[tuple[str, bool, bool]],
    device: str,
    sampler: GpuSampler,
    results: dict,
    save: Callable[[], None],
) -> None:
    """``Predictor.predict`` for every model × batch × (precision, channels_last, cuDNN autotuner)."""
    import torch

    from benchmarks.model_only import make_predictor, read_tiles, time_batches

    tiles = {b: read_tiles(scene, 512, 64, b) for b in batches}
    for label, model in models.items():
        for batch in batches:
            x, v = tiles[batch]
            for precision, channels_last, autotune in variants:
                predictor = make_predictor(model, "torch", device, precision, channels_last)
                torch.backends.cudnn.benchmark = autotune  # after the engine, which turns it on
                probe = time_batches(predictor, x, v, 2, 2)
                n = max(5, min(60, math.ceil(1.0 / max(probe["median_batch_s"], 1e-3))))
                t0 = time.monotonic()
                row = time_batches(predictor, x, v, n, 0)
                row |= sampler.window(t0, time.monotonic())
                row |= {
                    "model": label,
                    "precision": precision,
                    "channels_last": channels_last,
                    "cudnn_benchmark": autotune,
                }
                row.pop("batch_s")
                results["model_only"].append(row)
                print(
                    f"  model-only {label} b{batch} {precision} cl={channels_last} autotune={autotune}: "
                    f"{row['tiles_per_s']:.1f} tiles/s, "
                    f"GPU {row['gpu_util_mean']} %",
                    file=sys.stderr,
                    flush=True,
                )
                save()
                del predictor
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False


def end_to_end(
    model: Path,
    sizes: list[int],
    layouts: list[tuple[int, ...]],
    device: str,
    work: Path,
    sampler: GpuSampler,
    results: dict,
    save: Callable[[], None],
    deadline: float,
) -> None:
    """``geoseg run --device cuda`` for each scene size and (workers, threads per worker, batch)."""
    for size in sizes:
        scene = scene_path(size)
        tiles = len(TileGrid(size, size, 512, 64))
        for workers, threads, batch in layouts:
            if time.monotonic() > deadline:
                results["skipped"].append(f"{size}² w{workers} t{threads} b{batch}: out of time")
                continue
            cfg = BenchConfig(
                sizes=[size],
                batch=batch,
                workers=workers,
                threads_per_worker=threads,
                torch_threads=max(1, (os.cpu_count() or 1) // workers),
                engine="torch",
                device=device,
            )
            t0 = time.monotonic()
            try:
                run = run_geoseg_checked(cfg, model, scene, (size, size), tiles, work / f"g{size}")
            except BenchmarkError as exc:
                results["errors"].append(str(exc)[-3000:])
                save()
                continue
            row = {
                "size": size,
                "workers": workers,
                "threads_per_worker": threads,
                "batch": batch,
                "tiles": tiles,
                "wall_s": run.wall_s,
                "tiles_per_s": tiles / run.wall_s,
                "mp_per_s": size * size / 1e6 / run.wall_s,
                "peak_rss_mib": run.peak_rss_mib,
                "peak_rss_by_role_mib": run.peak_rss_by_role_mib,
                "timing": run.report,
            } | sampler.window(t0, time.monotonic())
            results["geoseg"].append(row)
            print(
                f"  geoseg {size}² w{workers} t{threads} b{batch}: {run.wall_s:.1f} s, "
                f"{row['tiles_per_s']:.1f} tiles/s, GPU {row['gpu_util_mean']} %",
                file=sys.stderr,
                flush=True,
            )
            save()


def run(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    deadline = started + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.gpu", *sys.argv[1:]]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine_info(),
        "gpu": gpu_info(),
        "model_only": [],
        "geoseg": [],
        "skipped": [],
        "errors": [],
    }

    def save() -> None:
        (args.out / "gpu.json").write_text(json.dumps(results, indent=1))

    sampler = GpuSampler()
    sampler.start()
    try:
        with tempfile.TemporaryDirectory(prefix="geoseg-gpu-bench-") as tmp:
            work = Path(tmp)
            models = {"bundled": BUNDLED_MODEL}
            if args.resnet18:
                models["unet_resnet18"] = stand_in_checkpoint(work / "unet_resnet18.pt", "resnet18")
            results["models"] = {k: str(v) for k, v in models.items()}
            scenes = [scene_path(s) for s in args.sizes]  # generated once, before anything is timed
            if args.startup:
                results["startup"] = startup_probe(args.device)
                save()
            model_only(models, scenes[0], args.batches, args.variants, args.device, sampler, results, save)
            layouts = [tuple(int(x) for x in layout.split("x")) for layout in args.layouts]
            end_to_end(
                BUNDLED_MODEL, args.sizes, layouts, args.device, work, sampler, results, save, deadline
            )
    finally:
        sampler.stop()
        results["total_s"] = time.monotonic() - started
        save()
    return results


def format_markdown(results: dict | list[dict], title: str = "# geoseg on a GPU") -> str:
    """Markdown of one run's results, or of several runs one after another (``## Run i``)."""
    if isinstance(results, list):
        return "\n".join(
            format_markdown(r, f"## Run {i}").replace("\n## ", "\n### ") for i, r in enumerate(results, 1)
        )
    gpu, machine = results["gpu"], results["machine"]
    lines = [
        title,
        "",
        f"Measured {results['started']} at commit `{results['git']}` with `{results['command']}`.",
        f"GPU: {gpu['nvidia_smi']} ({gpu['multiprocessors']} SMs; CUDA {gpu['torch_cuda']}, cuDNN "
        f"{gpu['cudnn']}); host: {machine['cpu']} "
        f"(ISA: {', '.join(machine.get('isa', [])) or 'not recorded'}), {machine['cores']} cores, "
        f"{machine['ram_gib']} GiB, "
        f"Python {machine['python']}, torch {machine['torch']}. GPU utilisation: `nvidia-smi` "
        "`utilization.gpu` (share of time a kernel ran) sampled every 0.1 s over each measurement.",
        "",
        "## (a) Model only: 512² tiles of the benchmark scene",
        "",
        "geoseg's `Predictor.predict`: uint8 tiles from host memory, normalised on the GPU, model, softmax, "
        "float16 probabilities back in host memory.",
        "",
        "| model | batch | precision | layout | tiles/s | GPU util % |",
        "|---|---:|---|---|---:|---:|",
    ]
    for r in results["model_only"]:
        layout = "channels_last" if r["channels_last"] else "NCHW"
        if r.get("cudnn_benchmark"):
            layout += ", cuDNN autotuner"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['precision']} | {layout} | {r['tiles_per_s']:.1f} | "
            f"{_f(r['gpu_util_mean'], 1)} |"
        )
    if results.get("startup"):
        steps = results["startup"]
        lines += [
            "",
            "Start-up of a cold process (seconds since it started): "
            + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in steps.items())
            + ".",
        ]
    lines += [
        "",
        "## (b) `geoseg run --device cuda` end to end (bundled model, torch engine, float16 autocast)",
        "",
        "| scene | workers × threads | batch | wall s | tiles/s | MP/s | GPU util % (mean / max) | "
        "GPU mem MiB | peak RSS MiB | read / predict / blend / vectorize / write s (summed) |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results["geoseg"]:
        t = r["timing"]
        stages = " / ".join(
            _f(t.get(k), 1) for k in ("read_s", "predict_s", "stitch_s", "vectorize_s", "write_s")
        )
        lines.append(
            f"| {r['size']}² | {r['workers']} × {r['threads_per_worker']} | {r['batch']} | "
            f"{r['wall_s']:.1f} | {r['tiles_per_s']:.1f} | {r['mp_per_s']:.1f} | "
            f"{_f(r['gpu_util_mean'], 1)} / {_f(r['gpu_util_max'], 1)} | {_f(r['gpu_mem_peak_mib'], 0)} | "
            f"{r['peak_rss_mib']:.0f} | {stages} |"
        )
    for note in results["skipped"] + results["errors"]:
        lines.append(f"\n- {note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for gpu.json and RESULTS_gpu.md")
    ap.add_argument("--sizes", default="8192,16384", help="scene sizes of the end-to-end runs")
    ap.add_argument("--batches", default="8,32", help="batch sizes of the model-only rows")
    ap.add_argument(
        "--layouts",
        default="1x8x32,1x4x32,2x6x32,1x8x8",
        help="end-to-end runs: WORKERSxTHREADSxBATCH, comma-separated",
    )
    ap.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="model-only rows, comma-separated PRECISION:LAYOUT:TUNER (fp32|fp16|bf16, cl|nchw, tune|notune)",
    )
    ap.add_argument("--no-startup", dest="startup", action="store_false", help="skip the start-up probe")
    ap.add_argument("--device", default="cuda", help="cuda[:N] (cpu: a smoke run of the script itself)")
    ap.add_argument("--no-resnet18", dest="resnet18", action="store_false", help="bundled model only")
    ap.add_argument("--budget-s", type=float, default=420, help="start no end-to-end run after this")
    ap.add_argument("--format", type=Path, default=None, help="print the markdown of a gpu.json and exit")
    args = ap.parse_args(argv)
    if args.format:
        print(format_markdown(json.loads(args.format.read_text())), end="")
        return
    if args.out is None:
        ap.error("--out is required")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.layouts = args.layouts.split(",")
    args.variants = [parse_variant(v) for v in args.variants.split(",")]
    results = run(args)
    (args.out / "RESULTS_gpu.md").write_text(format_markdown(results))


if __name__ == "__main__":
    main()
