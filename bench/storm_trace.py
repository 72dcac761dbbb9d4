#!/usr/bin/env python3
"""Where in a storm the slow messages fall: reads `jim-bench storm --trace FILE` files.

    bench/storm_trace.py [--ms 20] TRACE.csv...

For each file, and summed over all of them: the share of messages whose slowest delivery took
longer than --ms, in the calm phases, in the first 0.2 s of each storm (the burst of N
connections, sign-ups and immediate 503s), in the rest of the storms (hashing), and in the
0.2 s after each storm's last answer (its late 503s and hang-ups; timed nowhere else). A
storm that only raises the first 0.2 s is a burst; one that raises the rest is CPU sharing.
"""
import argparse
from collections import defaultdict

BURST_MS = 200.0
WINDOWS = ("calm", "storm start", "storm rest", "after storm")


def windows_of(path):
    """{window: [slow, total]} for one trace file."""
    phases, msgs = [], []
    for line in open(path):
        f = line.strip().split(",")
        if f[0] == "phase":
            phases.append((float(f[1]), f[2]))
        elif f[0] == "msg":
            msgs.append((float(f[1]), float(f[4])))
    phases.sort()
    counts = {w: [0, 0] for w in WINDOWS}
    for sent, worst in msgs:
        current = None
        for i, (start, kind) in enumerate(phases):
            if sent >= start:
                current = i
        if current is None:
            continue
        start, kind = phases[current]
        if kind == "calm":
            w = "calm"
        elif kind == "storm":
            w = "storm start" if sent - start < BURST_MS else "storm rest"
        elif current > 0 and phases[current - 1][1] == "storm" and sent - start < BURST_MS:
            w = "after storm"
        else:
            continue
        counts[w][0] += worst > args.ms
        counts[w][1] += 1
    return counts


def line(name, counts):
    parts = []
    for w in WINDOWS:
        slow, total = counts[w]
        parts.append(f"{w} {slow}/{total} ({100.0 * slow / total:.1f}%)" if total else f"{w} -")
    return f"{name}: " + ", ".join(parts)


ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--ms", type=float, default=20.0, help="a message is slow above this (default 20)")
ap.add_argument("traces", nargs="+")
args = ap.parse_args()
total = defaultdict(lambda: [0, 0])
print(f"messages whose slowest delivery took more than {args.ms:g} ms:")
for path in args.traces:
    c = windows_of(path)
    for w, (slow, n) in c.items():
        total[w][0] += slow
        total[w][1] += n
    print(line(path, c))
if len(args.traces) > 1:
    print(line("all", total))
