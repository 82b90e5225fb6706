"""Segmentation metrics from a confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, n_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; ``ignore_index`` is skipped."""
    valid = target != ignore_index
    t = target[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(cm: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-class IoU, precision, recall and F1 (NaN where a class is absent) plus mIoU and accuracy."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    present = cm.sum(1) > 0
    return {
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "miou": float(np.nanmean(np.where(present, iou, np.nan))) if present.any() else float("nan"),
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else float("nan"),
    }
