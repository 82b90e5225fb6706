"""Preloaded by embedded Dask workers as they start: import the model libraries up front.

On a fresh worker these imports take seconds; done at start-up they overlap with the client's own
imports and input checks instead of delaying the first forward pass.
"""

import importlib
import multiprocessing
import os
import signal

from geoseg.inference.openvino import WORKER_TORCH_ENV

# smp (with timm and torchvision, ~2.5 s) is imported when a model is built. Where the client found the
# model's OpenVINO conversion cached for a CPU run (WORKER_TORCH_ENV=0), the torch-free predictor runs it
# and the worker never imports torch (~2 s, ~630 MB).
_torch = () if os.environ.get(WORKER_TORCH_ENV) == "0" else ("torch", "geoseg.inference.predictor")
for _name in (*_torch, "openvino"):
    try:
        importlib.import_module(_name)
    except ImportError:  # the task that needs it reports the problem
        pass

# Ctrl-C reaches the whole process group: the client shuts the workers down itself, with one line,
# so worker processes (not an in-process worker, which shares the client's process) ignore SIGINT
if multiprocessing.parent_process() is not None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: cannot change handlers here
        pass
