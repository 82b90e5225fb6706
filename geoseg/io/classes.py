"""Classes of training labels: colour tables of RGB-coded masks and display colours of class names."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geoseg.errors import LabelError

__all__ = ["BUILDING_CLASSES", "ColorClass", "ColorTable", "display_color", "hex_to_rgb"]

BUILDING_CLASSES = ["background", "building"]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``#RRGGBB`` -> (r, g, b)."""
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


# Display colours for common class names; others get a fixed palette in order.
KNOWN_COLORS = {
    "background": "#000000",
    "building": "#E3342F",
    "land": "#D9C8A9",
    "road": "#6C6C6C",
    "vegetation": "#38A169",
    "forest": "#1F6E43",
    "grassland": "#9AE6B4",
    "water": "#3182CE",
    "cropland": "#F6E05E",
    "cultivated": "#F6E05E",
    # NLCD-style colours for the NC Landsat strata classes
    "developed": "#EB0000",
    "agriculture": "#AB6C28",
    "herbaceous": "#DFDFC2",
    "shrubland": "#CCB879",
    "sediment": "#B3AC9F",
    "barren": "#B3AC9F",
}
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"]


def display_color(name: str, position: int) -> str:
    return KNOWN_COLORS.get(name.lower(), PALETTE[position % len(PALETTE)])


class ColorClass(BaseModel):
    """One class of an RGB-coded mask: its mask colour and (optionally) a display colour."""

    name: str
    mask: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")
    color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")


class ColorTable(BaseModel):
    """Colour-to-class table of RGB-coded chip masks (YAML: ``classes`` list and ``ignore`` colours)."""

    model_config = ConfigDict(extra="forbid")

    classes: list[ColorClass] = Field(min_length=1)
    ignore: list[str] = []

    @classmethod
    def load(cls, path: Path) -> ColorTable:
        if not path.is_file():
            raise LabelError(f"{path}: no such colour table")
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()))
        except (yaml.YAMLError, ValidationError) as exc:
            raise LabelError(f"{path}: invalid colour table ({str(exc).splitlines()[0]})") from None

    def index_of_color(self, ignore_index: int) -> dict[str, int]:
        return {c.mask.upper(): i for i, c in enumerate(self.classes)} | {
            color.upper(): ignore_index for color in self.ignore
        }
