"""Training configuration: one pydantic model for ``geoseg train`` flags, saved in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geoseg.io.classes import BUILDING_CLASSES

Task = Literal["landcover", "buildings"]


class TrainConfig(BaseModel):
    """Everything that defines a training run (saved as ``config.json`` in the run folder)."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    out: Path
    # Georeferenced data: images with polygon or raster labels (one label file per image, or one for all).
    images: list[Path] = []
    labels: list[Path] = []
    val_images: list[Path] = []
    val_labels: list[Path] = []
    # Plain chip folders (images/ + masks/ subfolders) with an RGB colour table.
    chips: Path | None = None
    colors: Path | None = None
    val_chips: str | None = Field(None, description="chip sub-folder name held out for validation")
    val_fraction: float = Field(0.2, gt=0, lt=0.9, description="strip of each scene held out")

    classes: list[str] | None = None
    class_field: str | None = None
    bands: list[str] | None = None

    arch: str = "unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: int | None = Field(
        None, ge=1, le=5, description="default 3 for unet/unetplusplus (~100 px receptive field)"
    )
    decoder_channels: list[int] | None = None
    encoder_weights: Path | None = Field(None, description="local encoder weight file (.pth)")

    epochs: int = Field(10, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    batch: int = Field(8, ge=1)
    size: int = Field(256, ge=32, description="training window in pixels (multiple of 32)")
    lr: float = Field(2e-3, gt=0)
    seed: int = 0
    sampler: Literal["random", "grid"] = "random"
    scale_range: tuple[float, float] = (0.5, 2.0)
    brightness: float = Field(0.15, ge=0)
    gsd_m: float | None = Field(None, gt=0, description="resample georeferenced imagery to this GSD")
    tile: int = 512
    overlap: int = Field(128, ge=0, description="recommended overlap recorded in the checkpoint")
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _inputs(self) -> TrainConfig:
        if bool(self.images) == bool(self.chips):
            raise ValueError("give either --images with --labels, or --chips with --colors")
        if self.images:
            if len(self.labels) not in (1, len(self.images)):
                raise ValueError(f"{len(self.images)} images need 1 or {len(self.images)} label files")
            if self.val_images and len(self.val_labels) not in (1, len(self.val_images)):
                raise ValueError("--val-images need 1 or as many --val-labels")
        if self.chips and self.colors is None:
            raise ValueError("--chips needs --colors (colour-to-class table)")
        if self.size % 32:
            raise ValueError(f"size must be a multiple of 32, got {self.size}")
        if self.task == "buildings" and self.classes not in (None, BUILDING_CLASSES):
            raise ValueError(f"buildings models have the classes {BUILDING_CLASSES}")
        return self

    def arch_kwargs(self) -> dict[str, Any]:
        """smp keyword arguments; unets default to a depth-3 encoder so tiled output stays seam-free."""
        kwargs: dict[str, Any] = {}
        depth = self.encoder_depth
        if depth is None and self.arch in ("unet", "unetplusplus"):
            depth = 3
        if depth is not None:
            kwargs["encoder_depth"] = depth
            if self.arch in ("unet", "unetplusplus"):
                kwargs["decoder_channels"] = self.decoder_channels or [256, 128, 64, 32, 16][5 - depth :]
        return kwargs

    def comparable(self) -> dict[str, Any]:
        """The settings a resumed run must share with the original (all but ``threads``)."""
        return self.model_dump(mode="json", exclude={"threads", "out"})
