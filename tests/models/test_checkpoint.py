"""Checkpoint format: round trip, safe loading, clear errors; the bundled model's metadata."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from geoseg.errors import CheckpointError
from geoseg.models import CheckpointMeta, ClassInfo, build_model, load_checkpoint, save_checkpoint
from geoseg.models.checkpoint import Normalization, read_checkpoint_meta
from geoseg.models.meta import read_meta
from geoseg.models.registry import ARCHITECTURES
from tests.conftest import BUILDINGS_MODEL, LANDCOVER_MODEL


def tiny_meta(**kw) -> CheckpointMeta:
    base = dict(
        task="landcover",
        arch="unet",
        encoder="resnet18",
        arch_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]},
        in_channels=4,
        bands=["b", "g", "r", "nir"],
        input_dtype="uint16",
        value_range=(0, 10000),
        normalization=Normalization(mean=[1, 2, 3, 4], std=[1, 1, 1, 1]),
        classes=[ClassInfo(id=1, name="a", color="#FF0000"), ClassInfo(id=2, name="b", color="#00FF00")],
    )
    return CheckpointMeta(**(base | kw))


def test_round_trip_preserves_predictions(tmp_path):
    meta = tiny_meta()
    model = build_model(meta.arch, meta.encoder, meta.in_channels, 2, **meta.arch_kwargs).eval()
    path = save_checkpoint(model, meta, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    assert loaded.meta == meta
    assert len(loaded.sha256) == 64
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        ref = model.half().float()(x)  # weights are stored as fp16
        got = loaded.model(x)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)


def test_checkpoint_loads_with_weights_only(tmp_path):
    meta = tiny_meta()
    model = build_model(meta.arch, meta.encoder, meta.in_channels, 2, **meta.arch_kwargs)
    path = save_checkpoint(model, meta, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "geoseg-checkpoint" and isinstance(payload["meta"], dict)


@pytest.mark.parametrize(
    "content, message",
    [(b"garbage", "not a readable geoseg checkpoint"), (None, "not a geoseg checkpoint")],
)
def test_bad_checkpoints_raise(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    for read in (load_checkpoint, read_meta):
        with pytest.raises(CheckpointError, match=message):
            read(path)
        with pytest.raises(CheckpointError, match="no such checkpoint"):
            read(tmp_path / "missing.pt")


def test_metadata_read_without_torch_equals_torch_load(tmp_path):
    meta = tiny_meta(arch_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]}, metrics={"miou": 0.5})
    model = build_model(meta.arch, meta.encoder, meta.in_channels, 2, **meta.arch_kwargs)
    trained = save_checkpoint(model, meta, tmp_path / "m.pt")
    for path in (trained, LANDCOVER_MODEL, BUILDINGS_MODEL):
        assert read_meta(path) == read_checkpoint_meta(path)[0]
    script = f"import sys; from geoseg.models.meta import read_meta; m = read_meta({str(trained)!r}); "
    script += "import geoseg.run.job; print(m.task, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["landcover", "False"]  # the client checks inputs without importing torch
    legacy = tmp_path / "legacy.pt"  # torch's pre-zip format: read with torch
    torch.save(torch.load(trained, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert read_meta(legacy) == meta
    damaged = tmp_path / "damaged.pt"
    data = bytearray(trained.read_bytes())
    start = data.find(b"geoseg-checkpoint")
    data[start : start + 6] = b"\xff" * 6  # inside data.pkl: the archive's CRC check fails
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable geoseg checkpoint"):
        read_meta(damaged)


def test_registry_builds_every_architecture_without_downloads():
    for arch in ARCHITECTURES:
        model = build_model(arch, "resnet18" if arch != "segformer" else "mit_b0", 13, 3)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_bundled_landcover_model_metadata():
    meta, state = read_checkpoint_meta(LANDCOVER_MODEL)
    assert meta.task == "landcover" and meta.in_channels == 3 and meta.input_dtype == "uint8"
    assert [c.name for c in meta.classes] == ["building", "land", "road", "vegetation", "water"]
    assert meta.training_data_sha256 and meta.metrics["val_miou"] > 0.3
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert LANDCOVER_MODEL.stat().st_size < 15 * 2**20


def test_run_refuses_a_checkpoint_of_another_task(tmp_path):
    from geoseg.config import RunConfig
    from geoseg.errors import ModelMismatchError
    from geoseg.run.job import run_scene
    from tests.conftest import KAMPALA

    meta = tiny_meta(task="buildings")
    model = build_model(meta.arch, meta.encoder, meta.in_channels, 2, **meta.arch_kwargs)
    path = save_checkpoint(model, meta, tmp_path / "buildings.pt")
    with pytest.raises(ModelMismatchError, match="a buildings model"):
        run_scene(RunConfig(scene=KAMPALA, out=tmp_path / "out", model=path, device="cpu", progress=False))
    assert not (tmp_path / "out").exists()
