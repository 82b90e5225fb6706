"""Inference engines: ONNX Runtime and OpenVINO agree with the torch reference on real imagery; exports
are cached.

Tolerance (onnx or openvino vs torch float32, bundled model, real Kampala tiles): max |Δp| < 1e-4 on float32
softmax probabilities, < 1e-3 on the float16 probabilities ``Predictor.predict`` returns (float16
spacing just below 1 is 4.9e-4), and >= 99.9 % of pixels with the same argmax class. Every comparison
runs f32 (the default, stated to each engine): they hold on any x86 CPU, with or without native bf16.
bf16 is checked for >= 99 % agreement only where the CPU computes it natively.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.errors import OptionError
from geoseg.inference.engines import (
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    make_engine,
    model_key,
    onnx_path,
    openvino_path,
)
from geoseg.inference.openvino import predictor_for
from geoseg.inference.precision import cpu_info, cpu_label, native_bf16
from geoseg.inference.predictor import Predictor, shared_predictor
from geoseg.models.checkpoint import load_checkpoint
from tests.conftest import KAMPALA, LANDCOVER_MODEL, crop_geotiff

pytest.importorskip("onnxruntime")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A private GEOSEG_CACHE_DIR for the module, with the bundled model exported into it once."""
    path = tmp_path_factory.mktemp("geoseg-cache")
    old = os.environ.get("GEOSEG_CACHE_DIR")
    os.environ["GEOSEG_CACHE_DIR"] = str(path)
    engine = OnnxEngine(load_checkpoint(LANDCOVER_MODEL), threads=1)
    assert engine.exported and engine.path.parent == path / "onnx"
    yield engine.path, engine.path.stat().st_mtime_ns
    if old is None:
        os.environ.pop("GEOSEG_CACHE_DIR", None)
    else:
        os.environ["GEOSEG_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def kampala_batch() -> tuple[np.ndarray, np.ndarray]:
    """Two real 288x320 Kampala windows (not multiples of 32: exercises padding and dynamic axes)."""
    with rasterio.open(KAMPALA) as src:
        data = np.stack([src.read(window=Window(c, r, 320, 288)) for r, c in [(300, 500), (1200, 1400)]])
    return data, np.ones((2, 288, 320), bool)


def float_probs(pred: Predictor, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = pred.engine.run(pred.prepare(x, v))[:, :, : x.shape[-2], : x.shape[-1]]
        return torch.softmax(logits.float(), dim=1).numpy()


def test_onnx_predictions_match_torch_on_real_imagery(onnx_cache, kampala_batch):
    x, v = kampala_batch
    ref = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU)
    onnx = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU, engine="onnx")
    assert isinstance(ref.engine, TorchEngine) and isinstance(onnx.engine, OnnxEngine)

    p_ref, p = float_probs(ref, x, v), float_probs(onnx, x, v)
    assert p.shape == (2, 5, 288, 320)
    assert np.abs(p - p_ref).max() < 1e-4
    agree = (p.argmax(1) == p_ref.argmax(1)).mean()
    assert agree >= 0.999, agree

    out_ref, out = ref.predict(x, v), onnx.predict(x, v)
    assert out.dtype == np.float16 and out.shape == out_ref.shape
    assert np.abs(out.astype(np.float32) - out_ref.astype(np.float32)).max() < 1e-3


def test_openvino_predictions_match_torch_on_real_imagery(onnx_cache, kampala_batch):
    pytest.importorskip("openvino")
    x, v = kampala_batch
    ref = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU)
    ov = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU, engine="openvino")
    assert isinstance(ov.engine, OpenVinoEngine)
    p_ref, p = float_probs(ref, x, v), float_probs(ov, x, v)
    assert p.shape == (2, 5, 288, 320)  # dynamic batch, height and width
    assert np.abs(p - p_ref).max() < 1e-4
    assert (p.argmax(1) == p_ref.argmax(1)).mean() >= 0.999
    out_ref, out = ref.predict(x, v), ov.predict(x, v)
    assert out.dtype == np.float16
    assert np.abs(out.astype(np.float32) - out_ref.astype(np.float32)).max() < 1e-3


def test_openvino_conversion_is_cached_reused_and_redone_when_damaged(onnx_cache, tmp_path):
    pytest.importorskip("openvino")
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    first = OpenVinoEngine(ckpt, threads=1, cache=tmp_path)
    path = openvino_path(ckpt, tmp_path)
    assert first.converted and first.path == path and path.with_suffix(".bin").is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.with_suffix(".bin").name, path.name]
    mtime = path.stat().st_mtime_ns
    again = OpenVinoEngine(ckpt, threads=1, cache=tmp_path)
    assert not again.converted and path.stat().st_mtime_ns == mtime
    x = torch.randn(1, 3, 64, 96)
    expected = first.run(x)
    path.write_text("<not an IR/>")
    redone = OpenVinoEngine(ckpt, threads=1, cache=tmp_path)
    assert redone.converted and torch.allclose(redone.run(x), expected)


def test_cached_conversion_runs_without_the_model_libraries(onnx_cache, kampala_batch):
    """get_predictor on the CPU with the model already converted gives the torch-free predictor: the
    torch model is never built (no smp import)."""
    pytest.importorskip("openvino")
    x, v = kampala_batch
    first = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU, engine="openvino")  # converts into the cache
    script = (
        "import sys, numpy as np; from geoseg.inference.predictor import get_predictor; "
        f"p = get_predictor({str(LANDCOVER_MODEL)!r}, 'cpu', 1, 'auto'); "
        f"x = np.load({str(onnx_cache[0].parent.parent / 'x.npy')!r}); "
        "np.save(sys.argv[1], p.predict(x, np.ones((len(x), *x.shape[2:]), bool))); "
        "print(p.engine.name, type(p).__name__, 'segmentation_models_pytorch' in sys.modules)"
    )
    np.save(onnx_cache[0].parent.parent / "x.npy", x)
    out_file = onnx_cache[0].parent.parent / "out.npy"
    out = subprocess.run(
        [sys.executable, "-c", script, str(out_file)], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["openvino", "OpenVinoPredictor", "False"]
    p, p_ref = np.load(out_file).astype(np.float32), first.predict(x, v).astype(np.float32)
    assert np.abs(p - p_ref).max() < 1e-3 and (p.argmax(1) == p_ref.argmax(1)).mean() > 0.9999


def test_auto_engine_falls_back_to_torch(monkeypatch):
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    assert isinstance(make_engine("auto", ckpt, CPU), TorchEngine)
    monkeypatch.undo()
    pytest.importorskip("openvino")

    def fails(*args, **kwargs):
        raise RuntimeError("cannot convert")

    monkeypatch.setattr(OpenVinoEngine, "__init__", fails)  # a model the converter rejects
    assert isinstance(make_engine("auto", ckpt, CPU), TorchEngine)


def test_onnx_export_is_cached_and_reused(onnx_cache):
    path, mtime = onnx_cache  # exported once by the fixture
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    assert path == onnx_path(ckpt) and path.name.startswith(ckpt.sha256)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind

    engine = OnnxEngine(ckpt, threads=1)
    assert not engine.exported and engine.path == path and path.stat().st_mtime_ns == mtime
    assert engine.threads == 1 and OnnxEngine(ckpt).threads == torch.get_num_threads()


def test_damaged_cache_file_is_exported_again(onnx_cache, tmp_path):
    _path, _ = onnx_cache
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    damaged = onnx_path(ckpt, tmp_path)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not an onnx model")
    engine = OnnxEngine(ckpt, threads=1, cache=tmp_path)
    assert engine.exported and engine.path == damaged
    x = torch.zeros(1, 3, 64, 96)
    assert torch.equal(engine.run(x), OnnxEngine(ckpt, threads=1).run(x))


def test_in_memory_checkpoint_is_keyed_by_its_weights():
    ckpt = replace(load_checkpoint(LANDCOVER_MODEL), sha256="")
    key = model_key(ckpt)
    assert len(key) == 64 and key == model_key(ckpt)
    with torch.no_grad():
        next(ckpt.model.parameters()).add_(1.0)
    assert model_key(ckpt) != key


def test_engine_choice_errors(monkeypatch, tmp_path):
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    with pytest.raises(OptionError, match="CPU only"):
        make_engine("onnx", ckpt, torch.device("cuda"))
    with pytest.raises(OptionError, match="openvino engine runs on CPU only"):
        make_engine("openvino", ckpt, torch.device("cuda"))
    with pytest.raises(OptionError, match="unknown engine"):
        make_engine("tensorrt", ckpt, CPU)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed: needed to export
    with pytest.raises(ImportError, match=r"pip install onnx \("):
        OnnxEngine(ckpt, cache=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        make_engine("onnx", ckpt, CPU)


def test_shared_predictor_passes_the_engine_through(onnx_cache):
    assert shared_predictor(LANDCOVER_MODEL, "cpu", 0, "torch").engine.name == "torch"
    predictor = shared_predictor(LANDCOVER_MODEL, "cpu", 0, "onnx")
    assert predictor.engine.name == "onnx"
    assert predictor is shared_predictor(LANDCOVER_MODEL, "cpu", 0, engine="onnx")


def test_engines_benchmark_smoke(tmp_path, onnx_cache):
    """The engines benchmark end to end on a tiny real crop (no timing assertions)."""
    from benchmarks import engines as bench

    scene = crop_geotiff(KAMPALA, tmp_path / "crop.tif", 300, 500, 160, 200)
    md = tmp_path / "ENGINES.md"
    results = bench.main(
        ["--scene", str(scene), "--tile", "128", "--overlap", "16", "--batch", "2", "--repeats", "1",
         "--warmup", "0", "--compile-timeout", "0", "--results", str(md), "--note", "test run"]
    )  # fmt: skip
    speed, agreement = results["engines"]["speed"], results["engines"]["agreement"]
    expected = {"torch", "onnx", "openvino", "openvino_graph", "torch_bf16"}
    expected |= {"openvino_graph_bf16"} if native_bf16() else set()  # both precisions where bf16 is native
    assert set(speed) == set(agreement) == expected
    assert results["engines"]["precisions"]["openvino_graph"] == "f32"
    assert results["machine"]["simd"] == cpu_info()["isa"]  # the result file names the CPU's ISA
    assert all(s["tiles_per_s"] > 0 for s in speed.values())
    assert agreement["onnx"]["tiles"] == 4 and agreement["onnx"]["argmax_agreement"] >= 0.999
    assert agreement["openvino_graph"]["argmax_agreement"] >= 0.999
    assert agreement["openvino_graph"]["max_abs_dp"] < 1e-3  # float16 output vs torch float32
    assert agreement["torch"]["max_abs_dp"] == 0.0
    assert results["engines"]["env"]["MALLOC_MMAP_MAX_"] == "0"
    text = md.read_text()
    assert "python -m benchmarks.engines --scene" in text and "test run" in text
    assert "| openvino_graph |" in text
    assert json.loads(md.with_suffix(".json").read_text())["engines"]["compile"] is None


def test_engines_report_the_precision_asked_for(onnx_cache):
    """On any CPU: f32 (the default) is stated to OpenVINO and read back from the compiled model, also by
    the torch-free predictor; torch and ONNX Runtime report theirs; onnx refuses reduced precision."""
    pytest.importorskip("openvino")
    ckpt = load_checkpoint(LANDCOVER_MODEL)
    assert OpenVinoEngine(ckpt, threads=1).precision == "f32"
    assert OpenVinoEngine(ckpt, threads=1, precision="f32").precision == "f32"
    assert OpenVinoEngine(ckpt, threads=1, precision="auto").precision in ("f32", "bf16", "fp16")
    assert make_engine("auto", ckpt, CPU, threads=1).precision == "f32"
    graph = predictor_for(str(LANDCOVER_MODEL), "cpu", 1, "auto")  # converted above: the torch-free one
    assert graph is not None and graph.engine.precision == "f32"
    assert make_engine("torch", ckpt, CPU).precision == "f32"
    assert make_engine("torch", ckpt, CPU, precision="bf16").precision == "bf16"
    assert make_engine("onnx", ckpt, CPU, threads=1).precision == "f32"
    with pytest.raises(ValueError, match="onnx engine runs f32 only"):
        make_engine("onnx", ckpt, CPU, precision="bf16")


@pytest.mark.skipif(not native_bf16(), reason=f"no native bf16 on this CPU: {cpu_label()}")
def test_openvino_bf16_agrees_with_f32_where_the_cpu_has_it(onnx_cache, kampala_batch):
    pytest.importorskip("openvino")
    x, v = kampala_batch
    ref = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU)
    bf16 = Predictor(load_checkpoint(LANDCOVER_MODEL), CPU, engine="openvino", precision="bf16")
    assert bf16.engine.precision == "bf16"
    agree = (ref.predict(x, v).argmax(1) == bf16.predict(x, v).argmax(1)).mean()
    assert 0.99 <= agree, agree
