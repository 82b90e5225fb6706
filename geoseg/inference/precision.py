"""Numerical precision of inference, and the CPU facts that decide what a precision costs.

The same inputs, model and settings must give the same class map on any CPU: monitoring compares runs
made months apart on different machines, so an accidental precision difference shows up as false change.
CPU engines therefore run float32 unless asked otherwise, and the precision is stated to every engine
explicitly: OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs with native bf16 (AVX-512-BF16,
AMX), where the bundled land-cover model's class map then differs on ≈ 0.5 % of pixels.

- ``f32``: float32 (default on CPU engines).
- ``bf16`` / ``fp16``: reduced precision where the engine supports it (OpenVINO falls back to what the
  CPU runs: read back from the compiled model and recorded, never assumed).
- ``auto``: the fastest precision the hardware runs natively: OpenVINO's own choice on the CPU (bf16
  where the CPU has it), bf16 autocast for torch on CPUs with native bf16, float16 autocast on CUDA.
- ``None`` (no ``--precision``): f32 on CPU engines, float16 autocast on CUDA (``--no-amp``: float32).
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

Precision = Literal["f32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

# CPU flags (as /proc/cpuinfo names them) that decide how fast and in which precision models run
ISA_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
_OPENVINO_HINTS = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}
_NAMES = {
    "float32": "f32",
    "f32": "f32",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "fp16",
    "f16": "fp16",
}


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``model`` (name), ``isa`` (which of ``ISA_FLAGS`` it has), ``cores``."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags], "cores": os.cpu_count() or 1}


def cpu_label(info: dict[str, Any] | None = None) -> str:
    """One line naming the CPU and its relevant ISA flags, e.g. ``AMD EPYC (avx2, avx512f, avx512_bf16)``."""
    info = info or cpu_info()
    return f"{info['model']} ({', '.join(info['isa']) or 'no AVX2'})"


def native_bf16(info: dict[str, Any] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX-512-BF16 or AMX)."""
    isa = (info or cpu_info())["isa"]
    return "avx512_bf16" in isa or "amx_bf16" in isa


def openvino_hint(precision: str | None) -> dict[str, str]:
    """OpenVINO CPU compile settings for ``precision``: an explicit inference precision, except ``auto``
    (the plugin's own choice)."""
    if precision == "auto":
        return {}
    return {"INFERENCE_PRECISION_HINT": _OPENVINO_HINTS[precision or "f32"]}


def precision_name(value: Any) -> str:
    """``f32``/``bf16``/``fp16`` for an OpenVINO element type, a torch dtype or a name."""
    text = str(value).removeprefix("torch.").removeprefix("<Type: '").removesuffix("'>").lower()
    return _NAMES.get(text, text)


def torch_autocast_dtype(precision: str | None, device_type: str, amp: bool = True) -> Any:
    """The autocast dtype of the torch engine (None: float32) for ``precision`` on ``device_type``."""
    import torch

    if precision is None:
        return torch.float16 if amp and device_type == "cuda" else None
    if precision == "auto":
        if device_type == "cuda":
            return torch.float16
        return torch.bfloat16 if native_bf16() else None
    return {"f32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
