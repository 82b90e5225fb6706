"""What every command shares: option types, parsers, exit codes and the one error formatter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from geoseg.config import DEFAULT_BUILDINGS_MODEL, DEFAULT_LANDCOVER_MODEL
from geoseg.errors import GeosegError, InterruptedRun

__all__ = [
    "DEFAULT_MODELS",
    "EXIT_BUSY",
    "EXIT_USAGE",
    "PRECISION_HELP",
    "Batch",
    "ClassField",
    "ClassNames",
    "Device",
    "NotClasses",
    "OutFolder",
    "OverwriteFolder",
    "PrecisionOpt",
    "Resample",
    "config_error",
    "fail",
    "interrupted",
    "parse_bands",
    "reported",
    "split",
]

EXIT_USAGE = 2
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: another monitor call holds the lock; try again later
PRECISION_HELP = (
    "f32, bf16, fp16 or auto (fastest native); default: f32 on CPU engines (the same class map on any CPU), "
    "float16 autocast on CUDA"
)
DEFAULT_MODELS = [
    DEFAULT_LANDCOVER_MODEL,
    DEFAULT_BUILDINGS_MODEL,
]  # geoseg run without --model: both products

# options several commands share
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")]
Resample = Annotated[bool, typer.Option(help="resample scenes whose GSD differs from the model's")]
PrecisionOpt = Annotated[str | None, typer.Option(help=PRECISION_HELP)]
Batch = Annotated[int, typer.Option(help="tiles per forward pass")]
ClassField = Annotated[str | None, typer.Option(help="label attribute holding class name or id")]
OutFolder = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
OverwriteFolder = Annotated[bool, typer.Option(help="replace an existing output folder")]
ClassNames = Annotated[str | None, typer.Option(help="class names when the map has none: 1=forest,2=water")]
NotClasses = Annotated[
    str | None,
    typer.Option(help="values that are not classes (default: 0 and the raster's nodata), or none"),
]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)  # always one line
    raise typer.Exit(code)


def interrupted(exc: InterruptedRun) -> NoReturn:
    """SIGINT/SIGTERM: one line, exit 128 + the signal number (130, 143) like a shell."""
    fail(str(exc), 128 + exc.signum)


def parse_bands(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        fail(f"--bands must be comma-separated band numbers, got {value!r}")
    return None


def parse_class_map(value: str | None) -> dict[str, str] | None:
    """``a=b,c=d`` -> {"a": "b", "c": "d"} (``--class-map`` of geoseg change)."""
    if value is None:
        return None
    pairs = [p.split("=") for p in value.split(",") if p.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        fail(f"--class-map must be AFTER=BEFORE class names separated by commas, got {value!r}")
    return {a.strip(): b.strip() for a, b in pairs}


def split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated values."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def config_error(exc: ValidationError) -> NoReturn:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    fail(f"invalid option {loc}: {err['msg']}" if loc else f"invalid options: {err['msg']}")


@contextmanager
def reported(path: object = None) -> Iterator[None]:
    """The one error contract of every command: invalid options, ``GeosegError`` and ``OSError`` become one
    ``error: ...`` line and exit 2; SIGINT/SIGTERM exit 128 + the signal. ``path``: named in an ``OSError``
    that does not say which file (e.g. the disk filled up under a library)."""
    try:
        yield
    except ValidationError as exc:
        config_error(exc)
    except InterruptedRun as exc:
        interrupted(exc)
    except GeosegError as exc:
        fail(str(exc))
    except OSError as exc:
        where = exc.filename or path
        fail(f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc))
