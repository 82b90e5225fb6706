"""``geoseg evaluate``: score a checkpoint or a classical baseline against labelled imagery.

Pixel scores (per-class IoU, F1/Dice, precision, recall, confusion matrix, mIoU, accuracy) are
computed on each scene's own grid; a checkpoint runs exactly as in ``geoseg run`` (same tiling,
blending and GSD resampling). Building models are also scored per object: predicted instances
against label polygons, one-to-one at IoU >= 0.5 (the SpaceNet rule).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from shapely.geometry import box

from geoseg.errors import LabelError
from geoseg.evaluation.metrics import confusion_matrix, object_counts_to_scores, object_scores, scores
from geoseg.inference.baseline import get_baseline
from geoseg.inference.precision import cpu_label
from geoseg.inference.predictor import Predictor, predict_image, resolve_device
from geoseg.inference.scene_checks import check_value_range, select_bands, work_grid
from geoseg.io.chips import IGNORE_INDEX, find_pairs, load_chips
from geoseg.io.classes import ColorTable
from geoseg.io.labels import is_vector, read_labels
from geoseg.io.raster import Scene, crs_of, open_scene, read_window
from geoseg.io.staging import atomic_write_text
from geoseg.models.checkpoint import load_checkpoint
from geoseg.outputs.instances import instance_polygons, label_instances
from geoseg.run.graph import to_scene_grid, work_window_of_block
from tiles import Window, window_from_bounds

BASELINE_PREFIX = "baseline:"
MIN_TRUTH_AREA = 4.0  # CRS units²: truth slivers left by clipping to --bounds are not buildings


@dataclass
class EvalReport:
    model: str
    task: str
    classes: list[str]
    confusion: np.ndarray
    inputs: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, float] | None = None
    inference: dict[str, Any] | None = None  # engine, the precision it reported, the CPU

    def summary(self) -> dict[str, Any]:
        s = scores(self.confusion)
        per_class = {
            name: {k: _num(s[k][i]) for k in ("iou", "f1", "precision", "recall")}
            | {"pixels": int(self.confusion[i].sum())}
            for i, name in enumerate(self.classes)
        }
        return {
            "model": self.model,
            "task": self.task,
            "miou": _num(s["miou"]),
            "accuracy": _num(s["accuracy"]),
            "classes": per_class,
            "confusion_matrix": {
                "rows": "truth",
                "columns": "prediction",
                "classes": self.classes,
                "counts": self.confusion.tolist(),
            },
            "objects": self.objects,
            "inputs": self.inputs,
            "inference": self.inference,
        }

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.summary(), indent=2) + "\n")

    def table(self) -> str:
        """A plain-text table of the per-class and overall scores."""
        s = self.summary()
        lines = [f"{'class':<14}{'IoU':>7}{'F1':>7}{'prec':>7}{'recall':>7}{'pixels':>12}"]
        for name, c in s["classes"].items():
            lines.append(
                f"{name:<14}{_fmt(c['iou'])}{_fmt(c['f1'])}{_fmt(c['precision'])}{_fmt(c['recall'])}"
                f"{c['pixels']:>12}"
            )
        lines.append(f"mIoU {_fmt(s['miou']).strip()}  pixel accuracy {_fmt(s['accuracy']).strip()}")
        if self.objects is not None:
            o = self.objects
            lines.append(
                f"objects (IoU >= 0.5): F1 {o['f1']:.3f}  precision {o['precision']:.3f}  "
                f"recall {o['recall']:.3f}  (tp {o['tp']}, fp {o['fp']}, fn {o['fn']})"
            )
        return "\n".join(lines)


def _num(v: float | np.ndarray | None) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def _fmt(v: float | None) -> str:
    return f"{'-':>7}" if v is None else f"{v:>7.3f}"


class Segmenter:
    """A checkpoint or a baseline behind one interface: class indexes for a region of a scene."""

    def __init__(
        self,
        spec: str,
        device: str = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        batch: int = 8,
        resample: bool = True,
        band_names: list[str] | None = None,
        precision: str | None = None,
    ) -> None:
        self.spec = spec
        self.band_names = band_names  # roles of the scenes' bands where they have no descriptions
        self.baseline = get_baseline(spec) if spec.startswith(BASELINE_PREFIX) else None
        if self.baseline is not None:
            self.task = self.baseline.task
            self.classes = [c.name for c in self.baseline.classes]
            self.predictor = None
            self.inference: dict[str, Any] | None = None
        else:
            dev = resolve_device(device)
            ckpt = load_checkpoint(spec, device=dev)
            self.predictor = Predictor(ckpt, dev, precision=precision)
            self.inference = {
                "engine": self.predictor.engine.name,
                "precision": self.predictor.engine.precision,
                "cpu": cpu_label(),
            }
            self.meta = ckpt.meta
            self.task = ckpt.meta.task
            self.classes = [c.name for c in ckpt.meta.classes]
            self.tile = tile or ckpt.meta.tile_size
            self.overlap = ckpt.meta.overlap if overlap is None else overlap
        self.batch = batch
        self.resample = resample

    def _predictor(self) -> Predictor:
        if self.predictor is None:  # baselines answer before a predictor is asked for
            raise RuntimeError(f"{self.spec}: a baseline has no checkpoint predictor")
        return self.predictor

    def predict_array(
        self, image: np.ndarray, valid: np.ndarray, bands: Sequence[str], gsd_m: float | None
    ) -> np.ndarray:
        """Class indexes of an in-memory (C, H, W) image at its own resolution."""
        if self.baseline is not None:
            return self.baseline.predict(image, valid, list(bands), gsd_m)
        probs, _ = predict_image(
            self._predictor().predict, image, valid, len(self.classes), self.tile, self.overlap, self.batch
        )
        return probs.argmax(0).astype(np.uint8)

    def check_scene(self, scene: Scene) -> list[int]:
        """The bands to feed the model; ``ModelMismatchError`` if the scene does not suit it."""
        if self.baseline is not None:
            from geoseg.inference.modelspec import baseline_bands

            return baseline_bands(scene, self.spec, None, self.band_names)[0]
        bands = select_bands(scene, self.meta, None, self.band_names)
        check_value_range(scene, self.meta, bands)
        return bands

    def predict_region(self, scene: Scene, region: Window) -> tuple[np.ndarray, np.ndarray]:
        """Class indexes and validity of ``region`` of ``scene`` on the scene grid."""
        if self.baseline is not None:
            from geoseg.inference.modelspec import baseline_bands

            bands, roles = baseline_bands(scene, self.spec, None, self.band_names)  # as geoseg run does
            image, valid = read_window(scene.path, region, bands)
            return self.predict_array(image, valid, roles, scene.gsd_m), valid
        bands = self.check_scene(scene)
        work, _ = work_grid(scene, self.meta, self.resample)
        _, valid = read_window(scene.path, region, bands)
        if work is None:
            image, _ = read_window(scene.path, region, bands)
            probs, _ = predict_image(
                self._predictor().predict,
                image,
                valid,
                len(self.classes),
                self.tile,
                self.overlap,
                self.batch,
            )
        else:
            ww = work_window_of_block(region, scene.geobox.affine, work)
            image, wvalid = read_window(scene.path, ww, bands, work)
            probs, covered = predict_image(
                self._predictor().predict,
                image,
                wvalid,
                len(self.classes),
                self.tile,
                self.overlap,
                self.batch,
            )
            probs, _ = to_scene_grid(probs, covered, ww, work, region, scene)
        return probs.argmax(0).astype(np.uint8), valid


def scene_region(scene: Scene, bounds: tuple[float, float, float, float] | None) -> Window:
    full = Window(0, 0, *scene.shape)
    if bounds is None:
        return full
    region = window_from_bounds(bounds, scene.geobox.affine).intersection(full)
    if region is None:
        raise LabelError(f"{scene.path}: --bounds {bounds} do not overlap the image")
    return region


def truth_polygons(
    labels: Path, scene: Scene, region: Window, mask: np.ndarray, building: int
) -> gpd.GeoSeries:
    """True building outlines inside ``region``: label polygons clipped to it, or instances of a raster."""
    geobox = scene.geobox[region.slices()]
    if is_vector(labels):
        frame = gpd.read_file(labels, engine="pyogrio").to_crs(crs_of(scene.geobox).to_wkt())
        # self-intersecting outlines (bow ties, spikes) are repaired: GEOS cannot clip them otherwise
        clipped = frame.geometry.make_valid().intersection(box(*geobox.extent.boundingbox))
        return clipped[~clipped.is_empty & (clipped.area >= MIN_TRUTH_AREA)]
    inst = label_instances(mask == building, scene.gsd_m, split_touching=False)
    return instance_polygons(inst, geobox.affine, scene.geobox.crs).geometry


def group_lut(names: Sequence[str], groups: dict[str, list[str]], what: str) -> np.ndarray:
    """Class index -> group index (``IGNORE_INDEX`` for classes in no group), by class name."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lower = [n.lower() for n in names]
    for g, members in enumerate(groups.values()):
        for m in members:
            if m.lower() in lower:
                lut[lower.index(m.lower())] = g
    unused = [n for i, n in enumerate(names) if lut[i] == IGNORE_INDEX]
    if len(unused) == len(names):
        raise LabelError(f"--group: none of the {what} classes ({', '.join(names)}) is in a group")
    return lut


def evaluate_scenes(
    seg: Segmenter,
    pairs: Sequence[tuple[Path, Path]],
    class_field: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    notify: Callable[[str], None] = print,
    label_classes: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> EvalReport:
    """Score ``seg`` on georeferenced images with polygon or raster labels.

    ``label_classes``: the labels' class names (1-based raster ids, or names) where they are not the
    model's. ``groups``: score in these merged classes instead (name -> member class names, of the model
    and of the labels): how a model or baseline is compared with labels of another class scheme, on the
    same pixels; pixels whose true or predicted class is in no group are not scored.
    """
    truth_classes = label_classes or seg.classes
    if (
        label_classes
        and not groups
        and [c.lower() for c in label_classes] != [c.lower() for c in seg.classes]
    ):
        raise LabelError("--label-classes differ from the model's classes: map them with --group")
    classes = list(groups) if groups else seg.classes
    k = len(classes)
    report = EvalReport(seg.spec, seg.task, classes, np.zeros((k, k), np.int64), inference=seg.inference)
    background = "background" if "background" in truth_classes else None
    pred_lut = group_lut(seg.classes, groups, "model's") if groups else None
    truth_lut = group_lut(truth_classes, groups, "labels'") if groups else None
    obj = {"tp": 0, "fp": 0, "fn": 0}
    for image_path, label_path in pairs:
        scene = open_scene(image_path)
        seg.check_scene(scene)
        region = scene_region(scene, bounds)
        geobox = scene.geobox[region.slices()]
        truth = read_labels(label_path, geobox, truth_classes, class_field, background)
        pred, valid = seg.predict_region(scene, region)
        truth[~valid] = IGNORE_INDEX
        if pred_lut is not None and truth_lut is not None:
            pred, truth = pred_lut[pred], truth_lut[truth]
            truth[pred == IGNORE_INDEX] = IGNORE_INDEX
        report.confusion += confusion_matrix(pred, truth, k)
        entry: dict[str, Any] = {
            "image": str(image_path),
            "labels": str(label_path),
            "window": asdict(region),
        }
        if seg.task == "buildings" and not groups:
            b = seg.classes.index("building")
            # The same instances as geoseg run writes: 4-connected regions split at necks.
            inst = label_instances((pred == b) & valid, scene.gsd_m)
            found = instance_polygons(inst, geobox.affine, scene.geobox.crs).geometry
            true_polys = truth_polygons(label_path, scene, region, truth, b)
            o = object_scores(list(found), list(true_polys))
            entry["objects"] = o
            for key in obj:
                obj[key] += int(o[key])
        report.inputs.append(entry)
        notify(f"{image_path}: {region.height}x{region.width} px scored")
    if seg.task == "buildings" and not groups:
        report.objects = object_counts_to_scores(obj["tp"], obj["fp"], obj["fn"])
    return report


def evaluate_chips(
    seg: Segmenter,
    root: Path,
    colors: Path,
    subfolder: str | None = None,
    notify: Callable[[str], None] = print,
) -> EvalReport:
    """Score ``seg`` on a plain image/mask chip folder (optionally only chips under ``subfolder``)."""
    table = ColorTable.load(colors)
    names = [c.name for c in table.classes]
    missing = [n for n in names if n not in seg.classes]
    if missing:
        raise LabelError(f"{colors}: classes {missing} are not among the model's {seg.classes}")
    pairs = [p for p in find_pairs(root) if subfolder is None or subfolder in p[0].relative_to(root).parts]
    if not pairs:
        raise LabelError(f"{root}: no chips under '{subfolder}'")
    remap = np.full(256, IGNORE_INDEX, np.uint8)
    remap[: len(names)] = [seg.classes.index(n) for n in names]
    k = len(seg.classes)
    report = EvalReport(seg.spec, seg.task, seg.classes, np.zeros((k, k), np.int64), inference=seg.inference)
    for chip in load_chips(pairs, table.index_of_color(IGNORE_INDEX)):
        image = np.moveaxis(chip.image, -1, 0)
        pred = seg.predict_array(image, np.ones(chip.mask.shape, bool), ["red", "green", "blue"], None)
        report.confusion += confusion_matrix(pred, remap[chip.mask], k)
        report.inputs.append({"image": chip.name})
    notify(f"{root}: {len(pairs)} chip(s) scored")
    return report
