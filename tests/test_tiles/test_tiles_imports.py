"""tiles/ stays a pure numpy + affine library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tiles

PACKAGE = Path(tiles.__file__).parent
ALLOWED = {"numpy", "affine"} | set(sys.stdlib_module_names)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a source file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_package_imports_only_numpy_affine_and_stdlib():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 6
    for source in sources:
        assert imported_modules(source) <= ALLOWED, source


def test_importing_tiles_loads_no_heavy_dependency():
    code = (
        "import sys, tiles; "
        "print(' '.join(m for m in ('torch', 'dask', 'rasterio', 'xarray', 'geoseg') if m in sys.modules))"
    )
    root = PACKAGE.parent
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == ""


def test_public_api():
    assert set(tiles.__all__) >= {
        "Window",
        "InvalidWindowError",
        "TileGrid",
        "TileGridError",
        "block_windows",
        "blend_weights",
        "BlockAccumulator",
        "stitch",
        "window_from_bounds",
    }
    assert all(hasattr(tiles, name) for name in tiles.__all__)
