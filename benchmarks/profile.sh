#!/usr/bin/env bash
# Where geoseg run's time goes at 8192² (quiet machine): model-only ceiling, geoseg run with the torch
# and onnx engines (twice each, interleaved), then one run under py-spy summarised by
# benchmarks/profile_summary.py.   usage: bash benchmarks/profile.sh [SCENE]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-$HOME/.cache/geoseg-bench/kampala_mirror_8192_v1.tif}
M=geoseg/checkpoints/landcover_rgb.pt
OUT=${OUT:-/tmp/geoseg-profile}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
ARGS=(--model "$M" --no-resample --device cpu --tile 512 --overlap 64 --batch 8 --overwrite --no-progress
      --torch-threads 2)
NOTUNE=(env -u MALLOC_MMAP_MAX_ -u MALLOC_TRIM_THRESHOLD_ -u MALLOC_ARENA_MAX)  # geoseg tunes its workers
uptime
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_ARENA_MAX=1 .venv/bin/python \
  benchmarks/model_only.py --model "$M" --scene "$S" --tile 512 --overlap 64 --batch 8 --batches 8 \
  --torch-threads 2 --json "$OUT/model_only.json" >/dev/null
python3 -c "import json; print('model-only tiles/s', round(json.load(open('$OUT/model_only.json'))['tiles_per_s'], 2))"
for engine in torch onnx torch onnx; do
  /usr/bin/time -f "$engine: %e s wall" "${NOTUNE[@]}" .venv/bin/geoseg run "$S" --out "$OUT/$engine" \
    "${ARGS[@]}" --engine "$engine" 2>&1 | tail -1
  .venv/bin/python -c "import json; t=json.load(open('$OUT/$engine/run.json'))['properties']['geoseg:timing']; \
print({k: round(v, 1) for k, v in t.items()})"
done
.venv/bin/py-spy record --subprocesses --rate 40 --format raw -o "$OUT/pyspy.txt" -- \
  "${NOTUNE[@]}" .venv/bin/geoseg run "$S" --out "$OUT/profiled" "${ARGS[@]}" >/dev/null 2>&1
.venv/bin/python benchmarks/profile_summary.py "$OUT/pyspy.txt" 40
uptime
