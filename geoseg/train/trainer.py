"""Epoch loop: AdamW with warm-up + cosine LR, validation through the inference code path, resumable state."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.inference.predictor import Predictor, predict_image
from geoseg.io.chips import IGNORE_INDEX, Chip
from geoseg.train.sampler import RandomChipSampler


@dataclass
class Validation:
    confusion: np.ndarray
    loss: float


def validate(predictor: Predictor, chips: Sequence[Chip], tile: int, overlap: int, batch: int) -> Validation:
    """Confusion matrix and mean cross-entropy of tiled, blended predictions over whole chips."""
    k = predictor.n_classes
    cm = np.zeros((k, k), np.int64)
    nll, count = 0.0, 0
    for chip in chips:
        image = np.moveaxis(chip.image, -1, 0)
        valid = np.ones(chip.mask.shape, bool)
        probs, _ = predict_image(predictor.predict, image, valid, k, tile, overlap, batch)
        cm += confusion_matrix(probs.argmax(0), chip.mask, k)
        labelled = chip.mask != IGNORE_INDEX
        truth = chip.mask[labelled].astype(np.int64)
        p_true = np.take_along_axis(probs[:, labelled], truth[None], axis=0)[0]
        nll -= float(np.log(np.clip(p_true, 1e-6, 1)).sum())
        count += int(labelled.sum())
    return Validation(cm, nll / max(count, 1))


def warmup_cosine(total_steps: int, warmup: float = 0.1) -> Callable[[int], float]:
    """LR factor: linear warm-up over ``warmup`` of the steps, then cosine decay to zero."""
    n_warm = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, total_steps - n_warm)))

    return factor


@dataclass
class FitSettings:
    epochs: int
    steps_per_epoch: int
    batch: int
    lr: float
    tile: int
    overlap: int


def fit(
    model: torch.nn.Module,
    predictor: Predictor,
    make_sampler: Callable[[int], RandomChipSampler],
    val_chips: Sequence[Chip],
    class_names: Sequence[str],
    weights: torch.Tensor,
    settings: FitSettings,
    on_epoch: Callable[[dict, dict], None],
    state: dict | None = None,
) -> None:
    """Train ``settings.epochs`` epochs, starting after ``state['epoch']`` when resuming.

    ``make_sampler(epoch)`` gives the epoch's (deterministically seeded) sampler. After each epoch
    ``on_epoch(row, state)`` receives the metrics row and the full training state to persist.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(settings.epochs * settings.steps_per_epoch))
    start, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, elapsed = int(state["epoch"]), float(state["seconds"])
    mean, std = predictor.mean, predictor.std
    for epoch in range(start + 1, settings.epochs + 1):
        t0 = time.perf_counter()
        sampler = make_sampler(epoch)
        model.train()
        losses = []
        bar = tqdm(range(settings.steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}", unit="step")
        for _ in bar:
            x, y = sampler.batch(settings.batch)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        model.eval()
        val = validate(predictor, val_chips, settings.tile, settings.overlap, settings.batch)
        s = scores(val.confusion)
        elapsed += time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "step": epoch * settings.steps_per_epoch,
            "lr": sched.get_last_lr()[0],
            "train_loss": float(np.mean(losses)),
            "val_loss": val.loss,
            "miou": s["miou"],
            "accuracy": s["accuracy"],
        } | {f"iou_{name}": float(v) for name, v in zip(class_names, s["iou"], strict=True)}
        row["seconds"] = round(elapsed, 1)
        on_epoch(
            row,
            {
                "epoch": epoch,
                "seconds": elapsed,
                "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "confusion": torch.from_numpy(val.confusion),
            },
        )
