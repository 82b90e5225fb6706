"""Registry of segmentation-models-pytorch architectures geoseg can build."""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch

ARCHITECTURES: dict[str, type[torch.nn.Module]] = {
    "unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "fpn": smp.FPN,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "segformer": smp.Segformer,
    "linknet": smp.Linknet,
    "pspnet": smp.PSPNet,
}


def build_model(
    arch: str,
    encoder: str,
    in_channels: int,
    classes: int,
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    """Build an smp model; never downloads weights unless ``encoder_weights`` names a source."""
    try:
        cls = ARCHITECTURES[arch.lower()]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}") from None
    try:
        return cls(
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            **kwargs,
        )
    except KeyError:
        raise ValueError(
            f"unknown encoder {encoder!r} (smp.encoders.get_encoder_names() lists them)"
        ) from None
