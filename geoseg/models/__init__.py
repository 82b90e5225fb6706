"""Model registry and checkpoint format."""

from geoseg.models.checkpoint import Checkpoint, CheckpointMeta, ClassInfo, load_checkpoint, save_checkpoint
from geoseg.models.registry import ARCHITECTURES, build_model

__all__ = [
    "ARCHITECTURES",
    "Checkpoint",
    "CheckpointMeta",
    "ClassInfo",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
