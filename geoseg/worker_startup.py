"""Preloaded by embedded Dask workers as they start: import torch and the model libraries up front.

On a fresh worker these imports take seconds; done at start-up they overlap with the client's own
imports and input checks instead of delaying the first forward pass.
"""

import importlib

for _name in ("torch", "geoseg.infer", "segmentation_models_pytorch"):
    try:
        importlib.import_module(_name)
    except ImportError:  # the task that needs it reports the problem
        pass
