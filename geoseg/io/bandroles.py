"""Bands by role: match a scene's bands to the bands a model (or baseline) needs, by name.

A band's *role* is its spectral meaning (``red``, ``nir``, ``swir1`` ...). Scene bands get their roles
from the GeoTIFF band descriptions or from ``--band-names``; checkpoints record theirs in
``CheckpointMeta.bands``. Names are compared case-insensitively through common aliases: STAC ``eo``
common names (``swir16``, ``nir08``), Sentinel-2 band ids (``B04``, ``B8A``), and spellings such as
``Near-Infrared`` or ``SWIR 1``. Landsat band numbers (``B4``) are *not* aliased: they mean different
bands on Landsat 5/7 and 8/9, so such scenes are named with ``--band-names``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from geoseg.errors import ModelMismatchError

ROLES = (
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "watervapour",
    "cirrus", "swir1", "swir2", "pan", "lwir",
)  # fmt: skip

_ALIASES: dict[str, str] = {
    "r": "red", "g": "green", "b": "blue", "n": "nir",
    "nearinfrared": "nir", "nearir": "nir", "nir1": "nir", "nirwide": "nir",
    "nirnarrow": "nir08", "narrownir": "nir08", "nir2": "nir08", "nir09": "watervapour",
    "aerosol": "coastal", "coastalaerosol": "coastal", "ultrablue": "coastal",
    "swir16": "swir1", "swir": "swir1", "shortwaveinfrared1": "swir1", "swiri": "swir1",
    "swir22": "swir2", "shortwaveinfrared2": "swir2", "swirii": "swir2", "mir": "swir2",
    "rededge": "rededge1", "re1": "rededge1", "re2": "rededge2", "re3": "rededge3",
    "panchromatic": "pan", "gray": "pan", "grey": "pan", "thermal": "lwir", "tir": "lwir",
    "wv": "watervapour", "watervapor": "watervapour",
    # Sentinel-2 MSI band ids (zero-padded, so "b4"-style Landsat numbers stay unknown)
    "b01": "coastal", "b02": "blue", "b03": "green", "b04": "red", "b05": "rededge1", "b06": "rededge2",
    "b07": "rededge3", "b08": "nir", "b8a": "nir08", "b09": "watervapour", "b10": "cirrus",
    "b11": "swir1", "b12": "swir2",
}  # fmt: skip

# A role that may stand in for another when the scene lacks the first (Sentinel-2's narrow NIR for NIR).
FALLBACK = {"nir": "nir08", "nir08": "nir"}


def role_of(name: str | None) -> str | None:
    """The canonical role of a band name, or ``None`` when the name means nothing known."""
    if not name:
        return None
    key = re.sub(r"[\s_\-.()]", "", str(name).strip().lower())
    if key in ROLES:
        return key
    if re.fullmatch(r"b0?8a", key):
        return "nir08"
    return _ALIASES.get(key)


def scene_roles(
    path: object, count: int, descriptions: Sequence[str | None], band_names: list[str] | None
) -> list[str | None]:
    """Role of each scene band (``None`` where unknown): from ``band_names`` when given, else from the
    band descriptions. ``band_names`` must name every band."""
    if band_names is not None:
        if len(band_names) != count:
            raise ModelMismatchError(
                f"{path}: --band-names gives {len(band_names)} name(s) but the scene has {count} band(s)"
            )
        unknown = [n for n in band_names if role_of(n) is None]
        if unknown:
            raise ModelMismatchError(
                f"{path}: unknown band name(s) {', '.join(unknown)} in --band-names; use "
                f"{', '.join(r for r in ROLES)}"
            )
        return [role_of(n) for n in band_names]
    return [role_of(d) for d in list(descriptions)[:count]] + [None] * max(0, count - len(descriptions))


def find_roles(path: object, roles: Sequence[str | None], wanted: Sequence[str], what: str) -> list[int]:
    """1-based indexes of the scene bands with the ``wanted`` roles, in that order; a ``ModelMismatchError``
    naming the first missing band otherwise (``what`` names who needs them, e.g. "the model")."""
    out = []
    for want in wanted:
        role = role_of(want)
        i = _index(roles, role)
        if i is None:
            have = ", ".join(r or "?" for r in roles)
            raise ModelMismatchError(
                f"{path}: no {want} band (needed by {what}, which uses {', '.join(wanted)}); the scene's "
                f"bands are {have}: name them with --band-names or pick them with --bands"
            )
        out.append(i + 1)
    return out


def _index(roles: Sequence[str | None], role: str | None) -> int | None:
    if role is None:
        return None
    for r in (role, FALLBACK.get(role)):
        if r is not None and r in roles:
            return roles.index(r)
    return None


def knows_roles(names: Sequence[str | None]) -> bool:
    """Whether every name has a known role (positional names like ``b1`` do not)."""
    return bool(names) and all(role_of(n) is not None for n in names)
