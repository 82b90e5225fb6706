"""Run a command and report its wall time and the peak summed RSS of its process tree.

    python benchmarks/peak_rss.py COMMAND [ARGS...]

psutil polls the command and all its descendants (Dask scheduler, nannies, workers) every 0.1 s.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil


def main(argv: list[str]) -> int:
    proc = subprocess.Popen(argv)
    root = psutil.Process(proc.pid)
    peak, t0 = 0, time.time()
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.1)
    print(
        f"wall {time.time() - t0:.1f} s, peak tree RSS {peak / 2**20:.0f} MiB, rc {proc.returncode}",
        file=sys.stderr,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
