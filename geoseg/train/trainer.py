"""A compact, deterministic training loop for semantic segmentation on chips."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from geoseg.metrics import confusion_matrix, scores
from geoseg.train.chips import IGNORE_INDEX, Chip
from geoseg.train.sampler import RandomChipSampler


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


@torch.inference_mode()
def predict_chip(
    model: torch.nn.Module, image: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Class indices for a whole (H, W, C) chip, padded by reflection to a multiple of 32."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    ph, pw = (-h) % 32, (-w) % 32
    x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    logits = model(normalize(x, mean, std))[:, :, :h, :w]
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def evaluate_chips(model, chips: Sequence[Chip], n_classes: int, mean, std) -> np.ndarray:
    model.eval()
    cm = np.zeros((n_classes, n_classes), np.int64)
    for chip in chips:
        cm += confusion_matrix(predict_chip(model, chip.image, mean, std), chip.mask, n_classes)
    return cm


def train(
    model: torch.nn.Module,
    sampler: RandomChipSampler,
    val_chips: Sequence[Chip],
    n_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    weights: torch.Tensor,
    steps: int,
    batch: int,
    lr: float = 2e-3,
    eval_every: int = 250,
    on_eval: Callable[[int, dict], None] | None = None,
) -> tuple[dict, dict]:
    """Train for ``steps`` with AdamW + one-cycle LR; keep the state with the best validation mIoU."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    best: dict = {"miou": -1.0}
    best_state: dict = {}
    bar = tqdm(range(1, steps + 1), desc="train", unit="step")
    t0 = time.time()
    for step in bar:
        model.train()
        x, y = sampler.batch(batch)
        x = normalize(x, mean, std).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % eval_every == 0 or step == steps:
            cm = evaluate_chips(model, val_chips, n_classes, mean, std)
            s = scores(cm)
            record = {
                "step": step,
                "loss": float(loss.item()),
                "miou": s["miou"],
                "accuracy": s["accuracy"],
                "iou": [float(v) for v in s["iou"]],
                "seconds": time.time() - t0,
            }
            if on_eval:
                on_eval(step, record)
            if s["miou"] > best["miou"]:
                best = record
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return best, best_state
