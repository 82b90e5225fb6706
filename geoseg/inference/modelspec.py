"""What ``geoseg run`` runs: a checkpoint file or a classical baseline (``baseline:landcover``,
``baseline:buildings``), resolved against a scene into metadata, band indexes and a worker task.

Baselines run through the same tiled pipeline as checkpoints: a worker applies the baseline's rules to
each tile and returns one-hot class "probabilities", which the blocks blend and label like a model's.
They need neither torch nor weights; their identity (the run's ``model sha256``) is the SHA-256 of
``geoseg/inference/baseline.py``, so changed rules invalidate finished runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geoseg.errors import CheckpointError, ModelMismatchError
from geoseg.inference.scene_checks import check_value_range, select_bands
from geoseg.inference.task import ModelTask
from geoseg.io.bandroles import find_roles, scene_roles
from geoseg.io.raster import Scene
from geoseg.models.meta import CheckpointMeta, Normalization, file_sha256, read_meta

if TYPE_CHECKING:
    from geoseg.config import RunConfig  # geoseg.config imports geoseg.inference.precision

BASELINE_PREFIX = "baseline:"
BASELINE_TILE = 512
BASELINE_OVERLAP = 32  # context for the buildings baseline's watershed and the water rule's filters
MAX_POSITIONAL_BANDS = 4  # scenes without band names: R, G, B[, NIR] is assumed for 3 or 4 bands only


def is_baseline(model: str | Path) -> bool:
    return str(model).strip().lower().startswith(BASELINE_PREFIX)


def _baseline(spec: str):
    from geoseg.inference.baseline import get_baseline

    try:
        return get_baseline(spec)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def baseline_meta(spec: str) -> CheckpointMeta:
    """Checkpoint-style metadata of a baseline (what run.json records as the model)."""
    b = _baseline(spec)
    return CheckpointMeta(
        task=b.task,
        arch="baseline",
        encoder=b.name,
        in_channels=len(b.uses),
        bands=list(b.uses),
        input_dtype="any",
        value_range=(0.0, 0.0),
        normalization=Normalization(mean=[0.0] * len(b.uses), std=[1.0] * len(b.uses)),
        classes=b.classes,
        tile_size=BASELINE_TILE,
        overlap=BASELINE_OVERLAP,
        notes=f"classical rules of geoseg.inference.baseline ({b.name}); uses the bands "
        f"{', '.join(b.uses)} where present and needs one of: " + "; ".join("+".join(n) for n in b.needs),
    )


def baseline_bands(
    scene: Scene, spec: str, bands: list[int] | None, band_names: list[str] | None
) -> tuple[list[int], list[str]]:
    """Band indexes to read for a baseline and their roles ("" = unknown: positional R, G, B[, NIR])."""
    b = _baseline(spec)
    roles = scene_roles(scene.path, scene.count, scene.band_names, band_names)
    if bands is not None:
        bad = [i for i in bands if not 1 <= i <= scene.count]
        if bad:
            raise ModelMismatchError(f"{scene.path}: band(s) {bad} do not exist (scene has {scene.count})")
        return bands, [roles[i - 1] or "" for i in bands]
    if not any(roles):
        if scene.count == 1:
            return [1], ["pan"]
        if 3 <= scene.count <= MAX_POSITIONAL_BANDS:
            return list(range(1, scene.count + 1)), ["red", "green", "blue", "nir"][: scene.count]
        raise ModelMismatchError(
            f"{scene.path}: {scene.count} bands without names; {b.name} needs "
            + " or ".join("+".join(n) for n in b.needs)
            + ": name them with --band-names (e.g. blue,green,red,nir,swir1,swir2) or pick R,G,B[,NIR] "
            "with --bands"
        )
    have = {r for r in roles if r} | ({"nir"} if "nir08" in roles else set())
    if not any(set(n) <= have for n in b.needs):
        missing = min((sorted(set(n) - have) for n in b.needs), key=len)
        find_roles(scene.path, roles, missing, b.name)  # raises, naming the first missing band
    used = [r for r in b.uses if r in have]
    if "pan" in have and not used:
        used = ["pan"]
    return find_roles(scene.path, roles, used, b.name), used


@dataclass(frozen=True, kw_only=True)  # keywords: ModelTask's own fields may grow
class BaselineTask(ModelTask):
    """A worker's baseline: its name (in ``checkpoint``), the roles of the bands read, the scene's GSD."""

    band_roles: tuple[str, ...] = ()
    gsd_m: float | None = None

    def own_predictor(self) -> BaselinePredictor:
        return _baseline_predictor(self.checkpoint, self.band_roles, self.gsd_m)


class _Engine:
    name = "baseline"
    precision = "f32"  # NumPy arithmetic, the same on any CPU


class BaselinePredictor:
    """``Predictor``'s interface for a baseline: one-hot class probabilities (float16) per tile."""

    engine = _Engine()

    def __init__(self, spec: str, band_roles: tuple[str, ...], gsd_m: float | None) -> None:
        self.baseline = _baseline(spec)
        self.roles = list(band_roles)
        self.gsd_m = gsd_m

    def predict_timed(self, batch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        k = len(self.baseline.classes)
        out = np.zeros((len(batch), k, *batch.shape[-2:]), np.float16)
        for n, (image, v) in enumerate(zip(batch, valid, strict=True)):
            idx = self.baseline.predict(image, v, self.roles, self.gsd_m)
            np.put_along_axis(out[n], idx[None].astype(np.intp), np.float16(1), axis=0)
        return out, time.perf_counter() - t0

    def predict(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self.predict_timed(batch, valid)[0]


@lru_cache(maxsize=8)
def _baseline_predictor(spec: str, band_roles: tuple[str, ...], gsd_m: float | None) -> BaselinePredictor:
    return BaselinePredictor(spec, band_roles, gsd_m)


@dataclass
class ResolvedModel:
    """A run's model checked against its scene."""

    meta: CheckpointMeta
    sha256: str
    bands: list[int]
    band_roles: list[str] | None  # baselines: the role of each band read
    baseline: bool

    def task(self, cfg: RunConfig, scene: Scene, model: str | Path | None = None) -> ModelTask:
        """The worker task that runs this model (``model``: the checkpoint, default ``cfg.model``)."""
        model = cfg.model if model is None else model
        class_ids = tuple(c.id for c in self.meta.classes)
        threads = cfg.cluster.resolved_torch_threads()
        if self.baseline:
            return BaselineTask(
                str(model).strip().lower(), "cpu", threads, class_ids, "auto", False,
                band_roles=tuple(self.band_roles or ()), gsd_m=scene.gsd_m,
            )  # fmt: skip
        return ModelTask(
            str(Path(model).resolve()), cfg.device, threads, class_ids, cfg.engine, cfg.amp, cfg.precision
        )


def resolve_model(cfg: RunConfig, scene: Scene, model: str | Path | None = None) -> ResolvedModel:
    """Metadata, SHA-256 and band indexes of ``model`` (default ``cfg.model``) for ``scene``; raises a
    ``GeosegError`` naming the file when the scene does not suit it."""
    model = cfg.model if model is None else model
    if is_baseline(model):
        spec = str(model).strip().lower()
        meta = baseline_meta(spec)
        bands, roles = baseline_bands(scene, spec, cfg.bands, cfg.band_names)
        import geoseg.inference.baseline

        return ResolvedModel(meta, file_sha256(geoseg.inference.baseline.__file__), bands, roles, True)
    meta = read_meta(model)
    if meta.task == "buildings" and "building" not in {c.name for c in meta.classes}:
        raise ModelMismatchError(f"{model}: a buildings model needs a class named 'building'")
    bands = select_bands(scene, meta, cfg.bands, cfg.band_names)
    check_value_range(scene, meta, bands)
    return ResolvedModel(meta, file_sha256(model), bands, None, False)
