"""``geoseg train``: data → model → epochs, tracked in a run folder and resumable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from geoseg.errors import CheckpointError
from geoseg.inference.predictor import Predictor
from geoseg.models import Checkpoint, CheckpointMeta, ClassInfo, build_model, save_checkpoint
from geoseg.models.checkpoint import Normalization
from geoseg.outputs.stac import software_versions
from geoseg.train.config import TrainConfig
from geoseg.train.data import TrainingData, load_training_data
from geoseg.train.sampler import GridChipSampler, RandomChipSampler, band_statistics, class_weights
from geoseg.train.tracking import TrainRun
from geoseg.train.trainer import FitSettings, fit


@dataclass
class TrainResult:
    run: TrainRun
    resumed: bool
    complete_before: bool
    best_score: float
    best_epoch: int
    score_name: str


def score_name(task: str) -> str:
    """The validation score that picks the best epoch."""
    return "iou_building" if task == "buildings" else "miou"


def load_encoder_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a local encoder weight file (a state dict, e.g. from timm/torchvision) into ``model.encoder``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable weight file ({type(exc).__name__})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    encoder = cast(torch.nn.Module, model.encoder)  # torch types submodule access as Tensor | Module
    own = encoder.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matched:
        raise CheckpointError(f"{path}: no weight matches the encoder's parameter names and shapes")
    own.update(matched)
    encoder.load_state_dict(own)


def checkpoint_meta(cfg: TrainConfig, data: TrainingData, norm: Normalization, row: dict) -> CheckpointMeta:
    metrics = {f"val_{k}": float(v) for k, v in row.items() if k not in ("epoch", "step", "lr", "seconds")}
    return CheckpointMeta(
        task=cfg.task,
        arch=cfg.arch,
        encoder=cfg.encoder,
        arch_kwargs=cfg.arch_kwargs(),
        in_channels=data.train[0].image.shape[-1],
        bands=data.bands,
        input_dtype=data.input_dtype,
        value_range=data.value_range,
        normalization=norm,
        classes=[
            ClassInfo(id=i + 1, name=n, color=c)
            for i, (n, c) in enumerate(zip(data.classes, data.colors, strict=True))
        ],
        tile_size=cfg.tile,
        overlap=cfg.overlap,
        gsd_m=data.gsd_m,
        training_data_sha256=data.sha256,
        metrics=metrics | {"epoch": float(row["epoch"])},
        notes=f"geoseg train: {cfg.arch}/{cfg.encoder}, {cfg.epochs} epochs x {cfg.steps_per_epoch} steps, "
        f"batch {cfg.batch}, window {cfg.size}, seed {cfg.seed}",
    )


def train_model(
    cfg: TrainConfig, overwrite: bool = False, notify: Callable[[str], None] = print
) -> TrainResult:
    """Train (or resume, or skip a finished run) as ``cfg`` says; all input checks come first."""
    data = load_training_data(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    in_channels = data.train[0].image.shape[-1]
    model = build_model(cfg.arch, cfg.encoder, in_channels, len(data.classes), **cfg.arch_kwargs())
    if cfg.encoder_weights is not None:  # a resumed run overwrites them with its saved state
        load_encoder_weights(model, cfg.encoder_weights)
    run = TrainRun(cfg.out)
    identity = {"config": cfg.comparable(), "data_sha256": data.sha256}
    record = {
        "config": cfg.model_dump(mode="json"),
        "classes": data.classes,
        "bands": data.bands,
        "gsd_m": data.gsd_m,
        "score": score_name(cfg.task),
        "validation_regions": data.val_regions,
        "train_pixels": int(sum(c.mask.size for c in data.train)),
        "val_pixels": int(sum(c.mask.size for c in data.val)),
        "software": software_versions(),
    }
    resumed = run.start(record, identity, overwrite)
    state = run.load_state() if resumed else None
    rows = run.rows()[: int(state["epoch"])] if state else []
    key = score_name(cfg.task)

    def best_of(rs: list[dict]) -> tuple[float, int]:
        scored = [(float(r[key]), int(r["epoch"])) for r in rs]
        return max(scored) if scored else (-1.0, 0)

    if state is not None and int(state["epoch"]) >= cfg.epochs:
        best_score, best_epoch = best_of(rows)
        return TrainResult(run, True, True, best_score, best_epoch, key)
    if state is not None:
        notify(f"resuming {cfg.out} after epoch {int(state['epoch'])}")

    n_classes = len(data.classes)
    model = model.to(memory_format=torch.channels_last)
    mean, std = band_statistics(data.train)
    norm = Normalization(mean=mean, std=std)
    meta = checkpoint_meta(cfg, data, norm, {"epoch": 0})
    predictor = Predictor(Checkpoint(model, meta, "", cfg.out), torch.device("cpu"))
    weights = class_weights(data.train, n_classes)
    notify(
        f"{len(data.train)} training / {len(data.val)} validation chip(s); classes {data.classes}; "
        f"class weights {[round(float(w), 2) for w in weights]}"
    )
    sampler_cls = GridChipSampler if cfg.sampler == "grid" else RandomChipSampler

    def make_sampler(epoch: int) -> RandomChipSampler:
        return sampler_cls(
            data.train,
            cfg.size,
            seed=[cfg.seed, epoch],
            scale_range=cfg.scale_range,
            brightness=cfg.brightness,
            value_range=data.value_range,
        )

    best = best_of(rows)

    def on_epoch(row: dict, st: dict) -> None:
        nonlocal best
        rows.append(row)
        meta = checkpoint_meta(cfg, data, norm, row)
        save_checkpoint(model, meta, run.last)
        if float(row[key]) > best[0]:
            best = (float(row[key]), int(row["epoch"]))
            save_checkpoint(model, meta, run.best)
        run.write_metrics(rows)
        run.save_state(st)
        notify(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} val loss {row['val_loss']:.3f} "
            f"{key} {float(row[key]):.3f} (best {best[0]:.3f} @ {best[1]})"
        )

    settings = FitSettings(cfg.epochs, cfg.steps_per_epoch, cfg.batch, cfg.lr, cfg.tile, cfg.overlap)
    fit(model, predictor, make_sampler, data.val, data.classes, weights, settings, on_epoch, state)
    return TrainResult(run, state is not None, False, best[0], best[1], key)
