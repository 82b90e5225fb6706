"""Run a command and report its wall time and the peak summed RSS of its process tree.

    python benchmarks/peak_rss.py COMMAND [ARGS...]

psutil polls the command and all its descendants (Dask scheduler, nannies, workers) every 0.1 s; each
process's own peak is reported too (main = the command itself).
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil


def role(p: psutil.Process, root: psutil.Process) -> str:
    if p.pid == root.pid:
        return "main"
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "other"
    return "other" if "resource_tracker" in cmd else "worker" if "spawn_main" in cmd else "other"


def main(argv: list[str]) -> int:
    proc = subprocess.Popen(argv)
    root = psutil.Process(proc.pid)
    peak, t0 = 0, time.time()
    own: dict[int, tuple[str, int]] = {}
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            sizes = [(p, p.memory_info().rss) for p in procs]
        except psutil.Error:
            continue
        peak = max(peak, sum(rss for _, rss in sizes))
        for p, rss in sizes:
            name, best = own.get(p.pid) or (role(p, root), 0)
            own[p.pid] = (name, max(best, rss))
        time.sleep(0.1)
    per_process = ", ".join(
        f"{name} {rss / 2**20:.0f}" for name, rss in sorted(own.values()) if rss > 64 * 2**20
    )
    print(
        f"wall {time.time() - t0:.1f} s, peak tree RSS {peak / 2**20:.0f} MiB, rc {proc.returncode}; "
        f"each process's own peak MiB: {per_process}",
        file=sys.stderr,
    )
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
