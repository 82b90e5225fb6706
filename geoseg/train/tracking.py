"""Tracked training runs: one folder per run with its config, per-epoch metrics, plot and checkpoints.

    RUN_DIR/config.json   resolved TrainConfig, classes, data hash, validation regions, versions
    RUN_DIR/metrics.csv   one row per finished epoch
    RUN_DIR/metrics.png   training loss and validation scores per epoch
    RUN_DIR/best.pt       checkpoint with the best validation score (what ``geoseg run`` uses)
    RUN_DIR/last.pt       checkpoint after the last finished epoch
    RUN_DIR/state.pt      full-precision weights, optimizer, scheduler and epoch, for resuming

Every file is replaced atomically; ``state.pt`` is written last, so a run killed at any point
resumes from the last epoch whose files are all complete.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoseg.errors import OutputExistsError
from geoseg.io.staging import atomic_path, atomic_write_text

CONFIG = "config.json"
METRICS = "metrics.csv"
PLOT = "metrics.png"
BEST = "best.pt"
LAST = "last.pt"
STATE = "state.pt"


class TrainRun:
    """The folder of one training run."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def best(self) -> Path:
        return self.root / BEST

    @property
    def last(self) -> Path:
        return self.root / LAST

    def record(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / CONFIG).read_text())
        except (OSError, ValueError):
            return None

    def start(self, record: dict[str, Any], identity: dict[str, Any], overwrite: bool) -> bool:
        """Prepare the folder; True when it already holds this run (resume), False for a fresh start.

        ``identity`` (settings and data hash) must equal the stored run's to resume; anything else
        in an existing folder needs ``overwrite``.
        """
        old = self.record()
        if old is not None and old.get("identity") == identity and not overwrite:
            return (self.root / STATE).exists()
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                what = "a training run with other settings or data" if old else "other files"
                raise OutputExistsError(
                    f"{self.root}: folder already holds {what}; use --overwrite or another --out"
                )
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / CONFIG, json.dumps(record | {"identity": identity}, indent=2) + "\n")
        return False

    def rows(self) -> list[dict[str, str]]:
        try:
            with (self.root / METRICS).open(newline="") as f:
                return list(csv.DictReader(f))
        except OSError:
            return []

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv and its plot with ``rows`` (one per epoch)."""
        if not rows:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.root / METRICS, buf.getvalue())
        plot_metrics(rows, self.root / PLOT)

    def save_state(self, state: dict[str, Any]) -> None:
        with atomic_path(self.root / STATE) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> dict[str, Any]:
        return torch.load(self.root / STATE, map_location="cpu", weights_only=True)


def plot_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    """Loss and validation score curves per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o", label="train")
    ax1.plot(epochs, [float(r["val_loss"]) for r in rows], marker="o", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    for key in [k for k in rows[0] if k.startswith("iou_")] + ["miou"]:
        ax2.plot(epochs, [float(r[key]) for r in rows], marker=".", label=key, lw=2 if key == "miou" else 1)
    ax2.set(xlabel="epoch", ylabel="IoU", title="validation IoU", ylim=(0, 1))
    ax2.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


@dataclass
class RunListing:
    path: Path
    task: str
    model: str
    epochs_done: int
    epochs: int
    best_epoch: int | None
    best_score: float | None
    score_name: str


def list_runs(root: Path) -> list[RunListing]:
    """Training runs in ``root`` (the folder itself or its sub-folders), newest config first."""
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    found = []
    for path in candidates:
        run = TrainRun(path)
        record = run.record()
        if record is None:
            continue
        cfg = record["config"]
        rows = run.rows()
        score_name = record.get("score", "miou")
        scored = [
            (float(r[score_name]), int(r["epoch"])) for r in rows if r.get(score_name) not in ("", None)
        ]
        best = max(scored) if scored else None
        found.append(
            RunListing(
                path=path,
                task=cfg["task"],
                model=f"{cfg['arch']}/{cfg['encoder']}",
                epochs_done=len(rows),
                epochs=int(cfg["epochs"]),
                best_epoch=best[1] if best else None,
                best_score=best[0] if best else None,
                score_name=score_name,
            )
        )
    return found
