"""Preloaded by embedded Dask workers as they start: import torch and the model libraries up front.

On a fresh worker these imports take seconds; done at start-up they overlap with the client's own
imports and input checks instead of delaying the first forward pass.
"""

import importlib

# smp (with timm and torchvision, ~2.5 s) is imported when a model is built: not at all where the
# default engine finds the model already converted (geoseg.infer.get_predictor)
for _name in ("torch", "geoseg.infer", "openvino"):
    try:
        importlib.import_module(_name)
    except ImportError:  # the task that needs it reports the problem
        pass
