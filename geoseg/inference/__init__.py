"""Models on tiles: the worker task (``task``), predictors for checkpoints (``predictor``, torch) and
cached OpenVINO conversions (``openvino``, torch-free), engines and precisions, classical baselines, and
the checks that a scene fits a model (``scene_checks``). torch is imported only by what needs it."""
