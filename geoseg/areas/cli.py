"""What ``geoseg sample`` and ``geoseg areas`` do, behind the thin typer commands in ``geoseg.cli``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geoseg.areas.design import Allocation, design_sample
from geoseg.areas.estimate import approximate_from_confusion, estimate_from_sample, read_confusion
from geoseg.areas.maps import ClassMap, MapError, count_classes, open_class_map
from geoseg.areas.samples import design_record, write_design
from geoseg.errors import OutputExistsError

_ALLOCATIONS: dict[str, Allocation] = {
    "olofsson": "olofsson",
    "proportional": "proportional",
    "equal": "equal",
}


def parse_pairs(value: str | None, what: str) -> dict[str, str]:
    """``forest=0.9, 3=0.7`` -> {"forest": "0.9", "3": "0.7"}."""
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        key, sep, v = part.partition("=")
        if not sep or not key.strip() or not v.strip():
            raise MapError(f"{what} must be CLASS=VALUE pairs (class id or name), got {part.strip()!r}")
        out[key.strip()] = v.strip()
    return out


def parse_names(value: str | None) -> dict[int, str]:
    out = {}
    for k, v in parse_pairs(value, "--names").items():
        try:
            out[int(k)] = v
        except ValueError:
            raise MapError(f"--names needs class ids as keys (1=forest), got {k!r}") from None
    return out


def parse_nodata(value: str | None) -> list[int] | None:
    """``--nodata``: comma-separated values that are not classes, or ``none``; None keeps the default."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise MapError(f"--nodata must be integer values or 'none', got {value!r}") from None


def _class_key(cmap: ClassMap, key: str, what: str) -> int:
    by_name = {v.casefold(): k for k, v in cmap.names.items()}
    if key.casefold() in by_name:
        return by_name[key.casefold()]
    try:
        return int(key)
    except ValueError:
        raise MapError(f"{what}: {key!r} is not a class of {cmap.path.name}") from None


def _numbers(cmap: ClassMap, value: str | None, what: str, cast: type) -> dict[int, float] | None:
    pairs = parse_pairs(value, what)
    if not pairs:
        return None
    try:
        return {_class_key(cmap, k, what): cast(v) for k, v in pairs.items()}
    except ValueError:
        raise MapError(f"{what}: values must be numbers, got {value!r}") from None


def run_sample(
    map_path: Path,
    out: Path,
    *,
    n: int | None,
    seed: int,
    allocation: str,
    min_per_stratum: int,
    target_se: float,
    expected_ua: str | None,
    per_stratum: str | None,
    names: str | None,
    nodata: str | None = None,
    blind: bool,
    overwrite: bool,
    echo: Callable[[str], None] = print,
) -> None:
    method = _ALLOCATIONS.get(allocation)
    if method is None:
        raise MapError(f"--allocation must be olofsson, proportional or equal, got {allocation!r}")
    if out.exists() and not overwrite:  # before reading the map
        raise OutputExistsError(f"{out}: already exists (it may hold labels); use --overwrite to replace it")
    cmap = open_class_map(map_path, parse_names(names), parse_nodata(nodata))
    ua: float | dict[int, float] = 0.85
    if expected_ua and "=" not in expected_ua:
        try:
            ua = float(expected_ua)
        except ValueError:
            raise MapError(f"--expected-ua: not a number: {expected_ua!r}") from None
    elif expected_ua:
        ua = _numbers(cmap, expected_ua, "--expected-ua", float) or 0.85
    fixed = _numbers(cmap, per_stratum, "--per-stratum", int)
    if not 0 < target_se < 1:
        raise MapError(f"--target-se must be between 0 and 1, got {target_se}")
    design = design_sample(
        cmap,
        n=n,
        seed=seed,
        allocation=method,
        min_per_stratum=min_per_stratum,
        target_se=target_se,
        expected_ua=ua,
        per_stratum={k: int(v) for k, v in fixed.items()} if fixed else None,
    )
    write_design(design, out, blind=blind, overwrite=overwrite)
    echo(f"{'class':<24}{'pixels':>14}{'area m2':>18}{'weight':>9}{'n':>6}")
    for s in design.strata:
        label = f"{s.map_class} {s.map_name}"
        echo(f"{label:<24}{s.pixels:>14,}{s.area_m2:>18,.1f}{s.weight:>9.4f}{s.n:>6}")
    how = f"target SE of overall accuracy {design.target_se}" if design.target_se else design.allocation
    echo(f"{out}: {design.n} sample points ({how}, seed {seed}); fill in ref_class, then run geoseg areas")


def run_areas(
    map_path: Path,
    samples: Path | None,
    *,
    out: Path | None,
    confusion: Path | None,
    skip_unlabelled: bool,
    names: str | None,
    nodata: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    if nodata is None and samples is not None and samples.is_file():
        nodata = design_record(samples).get("nodata")  # the values the sample was drawn without
    cmap = open_class_map(map_path, parse_names(names), parse_nodata(nodata))
    counts = count_classes(cmap)
    if samples is not None:
        est = estimate_from_sample(cmap, counts, samples, skip_unlabelled=skip_unlabelled)
    else:
        assert confusion is not None
        cm, ids = read_confusion(confusion, cmap)
        est = approximate_from_confusion(
            counts, cm, ids, {k: cmap.name(k) for k in set(ids) | set(counts.classes)}
        )
        est.inputs = {"map": str(map_path), "confusion": str(confusion)}
    echo(est.table())
    if out is not None:
        json_path, csv_path = est.write(out)
        echo(f"written {json_path} and {csv_path}")
