#!/usr/bin/env python3
"""Compares two kubeward binaries on one log, alternating their runs.

    python3 scripts/bench_alternate.py BEFORE AFTER LOG PAIRS [EXTRA_ARGS...]

Runs `BIN detect -q --format json [EXTRA_ARGS] LOG` for both binaries, two warm-up runs each,
then PAIRS pairs, swapping which binary goes first every pair, so that drifts in the machine's
load hit both alike. Prints the median, mean and minimum wall time of each, and the ratios.
With `--state PATH` among EXTRA_ARGS, the state file (and its -wal and -shm) is removed before
every run, so that each run does the whole work instead of resuming.
"""
import os
import statistics
import subprocess
import sys
import time

if len(sys.argv) < 5:
    sys.exit(__doc__)
before, after, log, pairs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
extra = sys.argv[5:]
cmds = {k: [b, "detect", "-q", "--format", "json", *extra, log] for k, b in (("before", before), ("after", after))}
state = extra[extra.index("--state") + 1] if "--state" in extra[:-1] else None


def fresh():
    for f in (state, f"{state}-wal", f"{state}-shm") if state else ():
        try:
            os.remove(f)
        except FileNotFoundError:
            pass


for _ in range(2):
    for c in cmds.values():
        fresh()
        subprocess.run(c, stdout=subprocess.DEVNULL, check=True)
t = {"before": [], "after": []}
for i in range(pairs):
    for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
        fresh()
        s = time.perf_counter()
        subprocess.run(cmds[k], stdout=subprocess.DEVNULL, check=True)
        t[k].append(time.perf_counter() - s)
for k, v in t.items():
    print(f"{k}: median {statistics.median(v):.4f} s, mean {statistics.mean(v):.4f} s, min {min(v):.4f} s")
ratios = [a / b for b, a in zip(t["before"], t["after"])]
print(f"after/before: median of per-pair ratios {statistics.median(ratios):.4f}, "
      f"ratio of medians {statistics.median(t['after']) / statistics.median(t['before']):.4f}")
