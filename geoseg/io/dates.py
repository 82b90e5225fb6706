"""Acquisition date of a scene: an explicit date, the scene's metadata tags, or a date in its file name."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import rasterio

# Tags (any namespace, dataset or band) that hold the acquisition time, most specific first.
DATE_TAGS = (
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATE",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "ACQUISITION",
    "ACQUISITION_TIME",
    "DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "DATETIME",
    "TIFFTAG_DATETIME",
)
# Default file-name pattern: a YYYYMMDD or YYYY-MM-DD (or YYYY_MM_DD) token not inside a longer number.
DEFAULT_DATE_PATTERN = r"(?<!\d)(?P<year>(?:19|20)\d{2})[-_]?(?P<month>[01]\d)[-_]?(?P<day>[0-3]\d)(?!\d)"
_TAG_DATE = re.compile(r"(?P<year>\d{4})[-:/]?(?P<month>\d{2})[-:/]?(?P<day>\d{2})")


def _date(m: re.Match) -> dt.date | None:
    try:
        return dt.date(int(m.group("year")), int(m.group("month")), int(m.group("day")))
    except (ValueError, IndexError):
        return None


def date_from_tags(tags: dict[str, str]) -> tuple[dt.date, str] | None:
    """The first date-like value among ``DATE_TAGS`` (matched case-insensitively), and its tag."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in DATE_TAGS:
        value = upper.get(key)
        if value:
            m = _TAG_DATE.search(str(value))
            if m and (d := _date(m)) is not None:
                return d, key
    return None


def date_from_name(name: str, pattern: str | None = None) -> dt.date | None:
    """The last date in ``name`` matching ``pattern`` (named groups year/month/day, or three groups)."""
    rx = re.compile(pattern or DEFAULT_DATE_PATTERN)
    for m in reversed(list(rx.finditer(name))):
        if rx.groupindex.keys() >= {"year", "month", "day"}:
            d = _date(m)
        else:
            try:
                d = dt.date(*(int(g) for g in m.groups()[:3]))
            except (TypeError, ValueError):
                d = None
        if d is not None:
            return d
    return None


def acquisition_date(
    scene: str | Path, override: dt.date | None = None, pattern: str | None = None
) -> tuple[dt.date | None, str]:
    """(date, where it came from): ``override`` (``--date``), else metadata tags, else the file name."""
    if override is not None:
        return override, "--date"
    path = Path(scene)
    try:
        with rasterio.open(path) as src:
            tag_sets = [src.tags()]
            tag_sets += [src.tags(ns=ns) for ns in src.tag_namespaces() if ns not in ("IMAGE_STRUCTURE",)]
            tag_sets += [src.tags(b) for b in range(1, src.count + 1)]
    except (rasterio.errors.RasterioError, OSError):
        tag_sets = []
    for tags in tag_sets:
        found = date_from_tags(tags)
        if found is not None:
            return found[0], f"metadata tag {found[1]}"
    d = date_from_name(path.name, pattern)
    if d is not None:
        return d, "file name"
    return None, "unknown"
