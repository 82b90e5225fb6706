"""Registry of segmentation-models-pytorch architectures geoseg can build."""

from __future__ import annotations

from typing import Any

import torch

from geoseg.errors import OptionError

# geoseg name -> segmentation_models_pytorch class (imported on first build: the Dask client and
# `geoseg run`'s validation only read checkpoint metadata and never need smp).
ARCHITECTURES: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "deeplabv3plus": "DeepLabV3Plus",
    "segformer": "Segformer",
    "linknet": "Linknet",
    "pspnet": "PSPNet",
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
    import segmentation_models_pytorch as smp

    try:
        cls = getattr(smp, ARCHITECTURES[arch.lower()])
    except KeyError:
        raise OptionError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}") from None
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
