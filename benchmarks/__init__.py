"""Benchmark suite: model-only ceiling vs ``geoseg run`` vs a naive script (see ``benchmarks/README.md``)."""
