"""Summarise a py-spy ``--format raw`` profile of ``geoseg run``: seconds per innermost geoseg/tiles
frame (or library leaf when no geoseg frame is on the stack), over all sampled threads and processes.

    python benchmarks/profile_summary.py PROFILE.txt RATE_HZ [TOP]
"""

from __future__ import annotations

import collections
import sys


def summarise(path: str, rate: float, top: int = 20) -> list[tuple[float, str]]:
    seconds: collections.Counter[str] = collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")[1:]  # the first frame names the process
        ours = [f for f in frames if "geoseg/" in f or "tiles/" in f]
        seconds[(ours[-1] if ours else (frames[-1] if frames else "(process)"))[:100]] += int(count)
    return [(n / rate, name) for name, n in seconds.most_common(top)]


if __name__ == "__main__":
    rate = float(sys.argv[2])
    rows = summarise(sys.argv[1], rate, int(sys.argv[3]) if len(sys.argv) > 3 else 20)
    print(f"{'seconds':>8}  innermost geoseg frame (sampled thread time, all processes)")
    for s, name in rows:
        print(f"{s:8.1f}  {name}")
