"""Inference engines compared: PyTorch eager (the reference) vs ONNX Runtime and OpenVINO, plus CPU bf16
autocast and torch.compile, on the same batch of real tiles, in one process with interleaved repeats.

OpenVINO twice: ``openvino`` is the engine under geoseg's torch ``Predictor`` (torch normalises and
applies the softmax), ``openvino_graph`` the torch-free ``OpenVinoPredictor`` that CPU workers run
(normalisation, softmax and float16 inside the OpenVINO graph).

    python -m benchmarks.engines --results benchmarks/ENGINES.md

The parent process runs the measurement in a child with geoseg's allocator environment
(``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_ARENA_MAX=1``) and
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``--threads``:

- speed: ``predict`` (normalise, pad, engine, softmax, float16) on one batch of ``--batch``
  real tiles spread over the scene; each repeat times every engine once, in rotating order, so machine
  noise hits all engines alike; warm-up batches excluded. CPU bf16 autocast is timed in the first
  ``--slow-repeats`` repeats only (it is an order of magnitude slower on CPUs without native bf16);
- torch.compile (default mode, channels_last) joins the comparison if its first call compiles within
  ``--compile-timeout`` seconds (``0`` skips it); otherwise the report says it was given up;
- agreement with the torch float32 reference over every tile of the scene's TileGrid: max and mean
  |Δp| of the float32 softmax probabilities, max |Δp| of the float16 outputs ``predict`` returns, and
  the fraction of pixels whose argmax class agrees.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import rasterio
import torch
from rasterio.windows import Window as RioWindow

from benchmarks.model_only import read_tiles
from benchmarks.run import BUNDLED_MODEL, side_env
from benchmarks.scenes import ROOT, SOURCE
from geoseg.inference.engines import OnnxEngine, OpenVinoEngine, TorchEngine
from geoseg.inference.openvino import OpenVinoPredictor
from geoseg.inference.precision import cpu_info, native_bf16
from geoseg.inference.predictor import Predictor
from geoseg.models.checkpoint import file_sha256, load_checkpoint
from geoseg.models.meta import read_meta
from tiles import TileGrid

CPU = torch.device("cpu")
AnyPredictor = Predictor | OpenVinoPredictor
READING_NOTES = [
    "- tiles/s = tiles timed / summed seconds of that engine's timed calls; the speed-up column is the "
    "median over repeats of torch's time / the engine's time in the same repeat (interleaved, rotating "
    "order), so a slow spell of the machine affects both sides of each ratio.",
    "- Δp: probabilities of an engine minus torch float32's, over every tile of the scene's grid. "
    "`Predictor.predict` returns float16, whose spacing just below 1.0 is 4.9e-4: an engine whose "
    "float32 probabilities differ by ~1e-6 can still differ by one float16 step in the output.",
    "- openvino: OpenVINO's CPU plugin under the torch `Predictor` (torch normalises, pads, applies the "
    "softmax); openvino_graph: the torch-free `OpenVinoPredictor` CPU workers run, with normalisation, "
    "nodata zeroing, softmax and the float16 cast inside the OpenVINO graph. Its probabilities exist only "
    "as float16, so its float32 Δp columns include the float16 rounding (≤ 2.4e-4) and its float32 "
    "argmax is that of float16 values, where near-ties round to equal values (the first class wins). "
    "The float16 columns compare every engine's `predict` output with torch's, as the pipeline blends them.",
    "- torch_bf16: `torch.autocast('cpu', dtype=torch.bfloat16)` around the torch engine (channels_last); "
    "bf16 is only fast on CPUs with native bf16 (avx512_bf16 / amx_bf16, see SIMD above).",
    "- torch.compile: compile time is a cold start (fresh `TORCHINDUCTOR_CACHE_DIR`); a new input shape "
    "(e.g. a smaller last batch) compiles again.",
]


# --------------------------------------------------------------------------- child: measurements


class CompiledEngine:
    """``torch.compile`` of the torch engine's (channels_last) model."""

    name = "torch_compile"

    def __init__(self, model: torch.nn.Module) -> None:
        self.device = CPU
        self.model = torch.compile(TorchEngine(model, CPU).model)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def compiled_predictor(
    model: Path, x: np.ndarray, v: np.ndarray, timeout_s: float
) -> tuple[Predictor | None, dict]:
    """A torch.compile predictor compiled by one call on ``x``; ``None`` if that takes over ``timeout_s``."""

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError

    ckpt = load_checkpoint(model)
    pred = Predictor(ckpt, CPU, engine=CompiledEngine(ckpt.model))
    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(max(1, round(timeout_s)))
    t0 = time.perf_counter()
    try:
        pred.predict(x, v)
    except TimeoutError:
        return None, {"skipped": f"compiling did not finish within {timeout_s:.0f} s"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return pred, {"compile_s": time.perf_counter() - t0}


def build_predictors(
    args: argparse.Namespace, x: np.ndarray, v: np.ndarray
) -> tuple[dict[str, AnyPredictor], dict]:
    """One predictor per engine variant, each with its own copy of the model."""
    t0 = time.perf_counter()
    onnx = OnnxEngine(load_checkpoint(args.model), args.threads)
    info: dict = {"onnx_exported": onnx.exported, "onnx_init_s": time.perf_counter() - t0, "compile": None}
    t0 = time.perf_counter()
    openvino = OpenVinoEngine(load_checkpoint(args.model), args.threads)
    info |= {"openvino_converted": openvino.converted, "openvino_init_s": time.perf_counter() - t0}
    preds = {
        "torch": Predictor(load_checkpoint(args.model), CPU, engine="torch"),
        "onnx": Predictor(load_checkpoint(args.model), CPU, engine=onnx),
        "openvino": Predictor(load_checkpoint(args.model), CPU, engine=openvino),
        "openvino_graph": OpenVinoPredictor(read_meta(args.model), openvino.path, args.threads),
    }
    if native_bf16():  # what --precision bf16 / auto buys on this CPU, next to the f32 default
        meta = read_meta(args.model)
        preds["openvino_graph_bf16"] = OpenVinoPredictor(meta, openvino.path, args.threads, "bf16")
    if args.compile_timeout > 0:
        compiled, info["compile"] = compiled_predictor(args.model, x, v, args.compile_timeout)
        if compiled is not None:
            preds["torch_compile"] = compiled
    if args.bf16:
        ckpt = load_checkpoint(args.model)
        preds["torch_bf16"] = Predictor(ckpt, CPU, engine=TorchEngine(ckpt.model, CPU, torch.bfloat16))
    info["precisions"] = {name: pred.engine.precision for name, pred in preds.items()}
    return preds, info


def time_interleaved(
    preds: dict[str, AnyPredictor], x: np.ndarray, v: np.ndarray, repeats: dict[str, int], warmup: int
) -> dict[str, list[float]]:
    """Seconds per ``predict`` call of each predictor; repeat ``r`` runs them in an order rotated by ``r``.

    Predictor ``name`` takes part in the first ``repeats[name]`` repeats.
    """
    names = list(preds)
    for _ in range(warmup):
        for name in names:
            preds[name].predict(x, v)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(repeats.values())):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if r < repeats[name]:
                t0 = time.perf_counter()
                preds[name].predict(x, v)
                times[name].append(time.perf_counter() - t0)
    return times


def speed_summary(times: dict[str, list[float]], batch: int, reference: str = "torch") -> dict[str, dict]:
    out = {}
    for name, ts in times.items():
        # per-repeat ratio: the reference's time over this engine's time in the same repeat
        ratios = [a / b for a, b in zip(times[reference], ts, strict=False)]
        out[name] = {
            "tiles_per_s": batch * len(ts) / sum(ts),
            "median_batch_s": statistics.median(ts),
            "min_batch_s": min(ts),
            "batch_s": ts,
            "speedup_vs_reference_median": statistics.median(ratios),
            "repeats": len(ts),
        }
    return out


def scene_tiles(scene: Path, tile: int, overlap: int):
    """Every tile of the scene's TileGrid: (data (C, h, w), valid (h, w))."""
    with rasterio.open(scene) as src:
        for w in TileGrid(src.height, src.width, tile, overlap):
            win = RioWindow(w.col_off, w.row_off, w.width, w.height)
            yield src.read(window=win), np.all(src.read_masks(window=win) > 0, axis=0)


def float_probs(pred: AnyPredictor, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float32 softmax probabilities (N, K, h, w) of ``pred``'s engine: ``pred.predict`` returns exactly
    these, rounded to float16 (the torch-free predictor's graph gives float16 only)."""
    if isinstance(pred, OpenVinoPredictor):
        return pred.predict(x, v).astype(np.float32)
    with torch.inference_mode():
        logits = pred.engine.run(pred.prepare(x, v))
        return torch.softmax(logits[:, :, : x.shape[-2], : x.shape[-1]].float(), dim=1).numpy()


def agreement(
    preds: dict[str, AnyPredictor], scene: Path, tile: int, overlap: int, batch: int, reference: str = "torch"
) -> dict[str, dict]:
    """Each engine vs the reference over every tile of the scene."""
    stats = {
        n: {"max_abs_dp": 0.0, "sum_abs_dp": 0.0, "max_abs_dp_fp16": 0.0, "agree": 0, "agree16": 0}
        for n in preds
    }
    pixels, n_tiles = 0, 0
    tiles = list(scene_tiles(scene, tile, overlap))
    for start in range(0, len(tiles), batch):
        part = tiles[start : start + batch]
        n = len(part)
        part += tiles[: batch - n]  # full batches only (torch.compile would recompile); extras ignored
        x, v = np.stack([t[0] for t in part]), np.stack([t[1] for t in part])
        ref = float_probs(preds[reference], x, v)[:n]
        ref16 = ref.astype(np.float16).astype(np.float32)
        ref_label, ref16_label = ref.argmax(1), ref16.argmax(1)
        pixels += ref_label.size
        n_tiles += n
        for name, pred in preds.items():
            p = float_probs(pred, x, v)[:n]
            d = np.abs(p - ref)
            s = stats[name]
            s["max_abs_dp"] = max(s["max_abs_dp"], float(d.max()))
            s["sum_abs_dp"] += float(d.sum(dtype=np.float64))
            p16 = p.astype(np.float16).astype(np.float32)
            s["max_abs_dp_fp16"] = max(s["max_abs_dp_fp16"], float(np.abs(p16 - ref16).max()))
            s["agree"] += int((p.argmax(1) == ref_label).sum())
            s["agree16"] += int((p16.argmax(1) == ref16_label).sum())
    n_classes = next(iter(preds.values())).n_classes
    return {
        name: {
            "max_abs_dp": s["max_abs_dp"],
            "mean_abs_dp": s["sum_abs_dp"] / (pixels * n_classes),
            "max_abs_dp_fp16_output": s["max_abs_dp_fp16"],
            "argmax_agreement": s["agree"] / pixels,
            "pixels_differing": pixels - s["agree"],
            "argmax_agreement_fp16_output": s["agree16"] / pixels,
            "pixels_differing_fp16_output": pixels - s["agree16"],
            "pixels": pixels,
            "tiles": n_tiles,
        }
        for name, s in stats.items()
    }


def child_engines(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    x, v = read_tiles(args.scene, args.tile, args.overlap, args.batch)
    preds, info = build_predictors(args, x, v)
    repeats = {name: args.slow_repeats if name == "torch_bf16" else args.repeats for name in preds}
    load_before = os.getloadavg()
    times = time_interleaved(preds, x, v, repeats, args.warmup)
    load_after = os.getloadavg()
    return {
        "speed": speed_summary(times, args.batch),
        "agreement": agreement(preds, args.scene, args.tile, args.overlap, args.batch),
        "tile_shape": list(x.shape[-2:]),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        **info,
    }


# --------------------------------------------------------------------------- parent: orchestration


def run_child(args: argparse.Namespace) -> dict:
    """Run the measurement in a child process with the allocator environment; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="geoseg-engines-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.engines", *child_argv(args), "--child", "--json", str(out)]
        # A fresh inductor cache: the reported compile time is a cold start's.
        env = side_env(True, args.threads) | {"TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(out.read_text())
    result["env"] = {k: env[k] for k in sorted(env) if k.startswith(("MALLOC_", "OMP_", "MKL_"))}
    return result


def machine_note() -> dict:
    cpu = cpu_info()
    procs = [p for p in psutil.process_iter(["cmdline", "name"]) if p.pid != os.getpid()]
    for p in procs:
        try:
            p.cpu_percent(interval=None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    others = []
    for p in procs:
        try:
            pct = p.cpu_percent(interval=None)
        except psutil.Error:
            continue
        if pct >= 20:
            cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])
            others.append(f"pid {p.pid} {pct:.0f}% CPU: {cmd[:120]}")
    import onnxruntime
    import openvino

    return {
        "cpu": cpu["model"],
        "cores": os.cpu_count(),
        "simd": cpu["isa"],
        "native_bf16": native_bf16(cpu),
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__.split("-")[0],
        "load_avg": os.getloadavg(),
        "busy_processes": others,
    }


def fmt_speed_table(speed: dict[str, dict]) -> list[str]:
    rows = [
        "| engine | tiles/s | median batch s | min batch s | speed-up vs torch (median per-repeat ratio) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in speed.items():
        rows.append(
            f"| {name} | {s['tiles_per_s']:.2f} | {s['median_batch_s']:.3f} | {s['min_batch_s']:.3f} "
            f"| {s['speedup_vs_reference_median']:.2f}x |"
        )
    return rows


def compile_note(info: dict | None) -> str:
    if info is None:
        return "not run (`--compile-timeout 0`)"
    if "skipped" in info:
        return f"given up: {info['skipped']}"
    return f"first call (compiling) took {info['compile_s']:.0f} s; default mode, channels_last"


def to_markdown(cmd: str, args: argparse.Namespace, machine: dict, main: dict) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sha = file_sha256(args.model)[:12]
    lines = [
        "# Inference engines: PyTorch vs ONNX Runtime vs OpenVINO (CPU)",
        "",
        "Command (from the repository root):",
        "",
        f"```bash\n{cmd}\n```",
        "",
        f"- date: {now}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']:.1f} GiB RAM, "
        f"{machine['platform']}; Python {machine['python']}, torch {machine['torch']}, "
        f"onnxruntime {machine['onnxruntime']}, openvino {machine.get('openvino', '?')}; "
        f"SIMD: {' '.join(machine['simd']) or 'none listed'}",
        f"- load average before: {[round(a, 2) for a in machine['load_avg']]}; during the engine run: "
        f"{[round(a, 2) for a in main['load_avg_before']]} → {[round(a, 2) for a in main['load_avg_after']]}",
        "- other busy processes (≥ 20% CPU) at start: "
        + ("; ".join(f"`{p}`" for p in machine["busy_processes"]) or "none"),
        f"- model: `{args.model.name}`, sha256 {sha}; scene `{args.scene.name}`; batch {args.batch} real "
        f"{args.tile}² tiles ({main['tile_shape'][0]}×{main['tile_shape'][1]}), {args.threads} threads "
        f"(torch, onnxruntime and OpenVINO), {args.warmup} warm-up + {args.repeats} timed interleaved "
        f"repeats ({args.slow_repeats} for torch_bf16)",
        "- child environment: " + " ".join(f"{k}={v}" for k, v in main["env"].items()),
        f"- ONNX export: {'exported in this run' if main['onnx_exported'] else 'reused from cache'} "
        f"(engine ready in {main['onnx_init_s']:.1f} s), opset 17, dynamic batch/height/width",
        "- OpenVINO conversion: "
        f"{'converted in this run' if main['openvino_converted'] else 'reused from cache'} "
        f"(engine ready in {main['openvino_init_s']:.1f} s), dynamic batch/height/width",
        f"- torch.compile: {compile_note(main['compile'])}",
        "- precision each engine reported (read back from the compiled model): "
        + ", ".join(f"{n} {p}" for n, p in main.get("precisions", {}).items()),
        "",
        "### Speed (`predict`: normalise, pad, engine, softmax, float16)",
        "",
        *fmt_speed_table(main["speed"]),
        "",
        "### Agreement with torch float32, every tile of the scene",
        "",
        "| engine | tiles | max \\|Δp\\| (float32 softmax) | mean \\|Δp\\| | max \\|Δp\\| of float16 output "
        "| argmax agreement | pixels differing | argmax agreement, float16 outputs | pixels differing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in main["agreement"].items():
        lines.append(
            f"| {name} | {a['tiles']} | {a['max_abs_dp']:.2e} | {a['mean_abs_dp']:.2e} "
            f"| {a['max_abs_dp_fp16_output']:.2e} | {a['argmax_agreement']:.6f} "
            f"| {a['pixels_differing']} of {a['pixels']} | {a['argmax_agreement_fp16_output']:.6f} "
            f"| {a['pixels_differing_fp16_output']} |"
        )
    if args.note:
        lines += ["", f"Note: {args.note}"]
    lines += ["", "### How to read this", "", *READING_NOTES]
    return "\n".join(lines) + "\n"


def child_argv(args: argparse.Namespace) -> list[str]:
    """The measurement options, as the children get them."""
    opts = ["--model", args.model, "--scene", args.scene, "--tile", args.tile, "--overlap", args.overlap,
            "--batch", args.batch, "--threads", args.threads, "--repeats", args.repeats,
            "--warmup", args.warmup, "--slow-repeats", args.slow_repeats,
            "--compile-timeout", args.compile_timeout]  # fmt: skip
    return [str(o) for o in opts] + ([] if args.bf16 else ["--no-bf16"])


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="geoseg checkpoint (.pt)")
    ap.add_argument("--scene", type=Path, default=SOURCE, help="scene to take real tiles from")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--repeats", type=int, default=10, help="timed interleaved repeats")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches per engine first")
    ap.add_argument("--slow-repeats", type=int, default=3, help="timed repeats of torch_bf16")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip torch CPU bf16 autocast")
    ap.add_argument(
        "--compile-timeout", type=float, default=120, help="seconds allowed for torch.compile (0: skip it)"
    )
    ap.add_argument("--results", type=Path, default=None, help="write markdown here (and JSON next to it)")
    ap.add_argument("--note", default="", help="text added to the markdown")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.child:
        result = child_engines(args)
        args.json.write_text(json.dumps(result, indent=1))
        return result
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such checkpoint")
    cmd = shlex.join(["python", "-m", "benchmarks.engines", *argv])
    machine = machine_note()
    print("engines: measuring ...", file=sys.stderr, flush=True)
    engines = run_child(args)
    results = {"machine": machine, "engines": engines, "command": cmd}
    md = to_markdown(cmd, args, machine, engines)
    print(md)
    if args.results:
        args.results.write_text(md)
        args.results.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
