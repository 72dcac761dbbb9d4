#!/usr/bin/env python3
"""Turns the JSON lines of bench/run.sh into bench/RESULTS.md: medians over the rounds, jimd next
to Redis, the ratio, and the issue's target for each row. Reads only the file it is given."""
import argparse
import json
import statistics
import sys

ap = argparse.ArgumentParser()
ap.add_argument("results")
for opt in ("date", "commit", "nproc", "cpu", "kernel", "redis", "load-before", "load-after", "seconds",
            "rounds", "quick"):
    ap.add_argument("--" + opt, default="")
a = ap.parse_args()

runs = []
with open(a.results) as f:
    for line in f:
        line = line.strip()
        if line:
            runs.append(json.loads(line))


def pick(label, proto):
    return [r["run"] for r in runs if r["run"].get("label") == label and r["run"].get("proto", proto) == proto]


def med(label, proto, key, sub=None):
    vals = []
    for run in pick(label, proto):
        v = run.get(key)
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        if isinstance(v, (int, float)) and "error" not in run:
            vals.append(v)
    return statistics.median(vals) if vals else None


def total(label, proto, key):
    vals = [run.get(key) for run in pick(label, proto) if isinstance(run.get(key), (int, float))]
    return sum(vals) if vals else None


def paired(label, key, sub=None):
    """Per-round jimd/Redis ratios (both runs from the same round) and their median."""
    per_round = []
    for rnd in sorted({r["round"] for r in runs}):
        vals = {}
        for r in runs:
            run = r["run"]
            if r["round"] != rnd or run.get("label") != label or "error" in run:
                continue
            v = run.get(key)
            if sub is not None and isinstance(v, dict):
                v = v.get(sub)
            if isinstance(v, (int, float)):
                vals[run.get("proto")] = v
        if vals.get("redis"):
            if "jim" in vals:
                per_round.append(vals["jim"] / vals["redis"])
    return (statistics.median(per_round) if per_round else None), per_round


def ratio_text(label, key, sub=None):
    m, each = paired(label, key, sub)
    if m is None:
        return "n/a", None
    return f"{m:.2f}× ({', '.join(f'{x:.2f}' for x in each)})", m


def si(v):
    if v is None:
        return "n/a"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def num(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)


def ratio(x, y):
    if x is None or y is None or y == 0:
        return None
    return x / y


def mark(ok):
    return "" if ok is None else ("met" if ok else "**not met**")


rows = []


def row(scenario, metric, jim, redis, rat, target, ok):
    rows.append(f"| {scenario} | {metric} | {jim} | {redis} | {rat} | {target} | {mark(ok)} |")


def fanout_rows(label, title, target_ratio):
    dj, dr = med(label, "jim", "deliveries_per_s"), med(label, "redis", "deliveries_per_s")
    rtext, rt = ratio_text(label, "deliveries_per_s")
    lost = total(label, "jim", "lost")
    dup = total(label, "jim", "duplicated")
    reo = total(label, "jim", "reordered")
    row(title, "deliveries/s", si(dj), si(dr), rtext, f"≥ {target_ratio}× Redis (stretch 1.5×)",
        None if rt is None else rt >= target_ratio)
    row("", "server CPU ns/delivery", num(med(label, "jim", "server_cpu_ns_per_delivery")),
        num(med(label, "redis", "server_cpu_ns_per_delivery")),
        ratio_text(label, "server_cpu_ns_per_delivery")[0], "reported", None)
    row("", "lost / duplicated / reordered (all rounds)",
        f"{num(lost)} / {num(dup)} / {num(reo)}",
        f"{num(total(label, 'redis', 'lost'))} / {num(total(label, 'redis', 'duplicated'))} / "
        f"{num(total(label, 'redis', 'reordered'))}", "", "zero loss", None if lost is None else lost == 0)
    row("", "latency p50 / p99 (ms, saturated)",
        f"{num(med(label, 'jim', 'latency_ms', 'p50'), '{:.1f}')} / {num(med(label, 'jim', 'latency_ms', 'p99'), '{:.1f}')}",
        f"{num(med(label, 'redis', 'latency_ms', 'p50'), '{:.1f}')} / {num(med(label, 'redis', 'latency_ms', 'p99'), '{:.1f}')}",
        "", "", None)
    row("", "server RSS at end (MiB)", num(ratio(med(label, "jim", "server_rss_kib"), 1024), "{:.1f}"),
        num(ratio(med(label, "redis", "server_rss_kib"), 1024), "{:.1f}"), "", "", None)
    row("", "jim-bench CPU (% of one core)", num(med(label, "jim", "bench_cpu_pct")),
        num(med(label, "redis", "bench_cpu_pct")), "", "well under 100 %", None)


fanout_rows("fanout-r1000", "fan-out R=1000 S=10, P=64, window 8", 1.0)
fanout_rows("fanout-r100", "fan-out R=100 S=10, P=64, window 8", 1.0)

pj, pr = med("latency-500", "jim", "latency_ms", "p99"), med("latency-500", "redis", "latency_ms", "p99")
lat_text, lat_ratio = ratio_text("latency-500", "latency_ms", "p99")
row("500 msg/s into R=1000 (S=10, 5 s)", "latency p99 (ms)", num(pj, "{:.1f}"), num(pr, "{:.1f}"),
    lat_text, "jimd ≤ Redis", None if lat_ratio is None else lat_ratio <= 1)
row("", "latency p50 / max (ms)",
    f"{num(med('latency-500', 'jim', 'latency_ms', 'p50'), '{:.1f}')} / {num(med('latency-500', 'jim', 'latency_ms', 'max'), '{:.1f}')}",
    f"{num(med('latency-500', 'redis', 'latency_ms', 'p50'), '{:.1f}')} / {num(med('latency-500', 'redis', 'latency_ms', 'max'), '{:.1f}')}",
    "", "", None)
row("", "server CPU ns/delivery", num(med("latency-500", "jim", "server_cpu_ns_per_delivery")),
    num(med("latency-500", "redis", "server_cpu_ns_per_delivery")),
    ratio_text("latency-500", "server_cpu_ns_per_delivery")[0], "", None)
row("", "lost (all rounds)", num(total("latency-500", "jim", "lost")), num(total("latency-500", "redis", "lost")),
    "", "zero loss", None if total("latency-500", "jim", "lost") is None else total("latency-500", "jim", "lost") == 0)

rss = med("connect", "jim", "server_rss_per_conn_bytes")
sps = med("connect", "jim", "signins_per_s")
first, last = med("connect", "jim", "signins_per_s_first10"), med("connect", "jim", "signins_per_s_last10")
conns = med("connect", "jim", "connections")
row(f"{num(conns)} idle signed-in connections", "server RSS growth per connection (bytes)", num(rss), "—", "",
    "≤ 4096", None if rss is None else rss <= 4096)
row("", "sign-ins/s at --kdf-iterations 1000 (200 at once)", si(sps), "—", "", "≥ 20,000/s",
    None if sps is None else sps >= 20000)
row("", "sign-ins/s, first 10 % / last 10 %", f"{si(first)} / {si(last)}", "—", "", "flat as users grow",
    None if first is None or last is None else last >= 0.8 * first)
row("", "server CPU µs per sign-in", num(med("connect", "jim", "server_cpu_us_per_signin")), "—", "", "", None)

b99, d99 = med("storm", "jim", "latency_before_ms", "p99"), med("storm", "jim", "latency_during_ms", "p99")
sr = med("storm", "jim", "p99_during_over_before")
n_storm = med("storm", "jim", "storm_users")
row(f"storm: {num(n_storm)} sign-ins at the default KDF, chat 200 msg/s into R={num(med('storm', 'jim', 'receivers'))}",
    "chat p99 before → during (ms)", f"{num(b99, '{:.1f}')} → {num(d99, '{:.1f}')}", "—",
    "", "", None)
row("", "p99 during / before (median of rounds)", num(sr, "{:.2f}×"), "—", "", "≤ 2×", None if sr is None else sr <= 2)
row("", "storm duration (s) / sign-ins/s", f"{num(med('storm', 'jim', 'storm_s'), '{:.1f}')} / "
    f"{num(med('storm', 'jim', 'storm_signins_per_s'), '{:.1f}')}", "—", "", "", None)

out = []
w = out.append
w("# jim-bench results" + (" (QUICK suite: not comparable)" if a.quick == "1" else ""))
w("")
w(f"Written by `bench/run.sh` on {a.date}, commit `{a.commit}`. Medians of {a.rounds} round(s); "
  f"each round starts fresh servers. jimd and Redis ran on the same machine, one after the other, "
  f"driven by the same jim-bench.")
w("")
w(f"- Machine: {a.nproc} CPUs, {a.cpu}, Linux {a.kernel}; {a.redis}.")
w(f"- Load average (1/5/15 min) before the suite: {a.load_before}; after: {a.load_after}. "
  f"The suite took {a.seconds} s. On a 2-core machine shared with other work, absolute numbers are noisy: "
  f"read the jimd/Redis ratios, which come from back-to-back runs.")
w("- jimd: `-a 127.0.0.1 -p 0 --http-port 0 --rate-limit 0 --max-clients 20000 --log-level warn "
  "--kdf-iterations 1000` (the storm: default KDF); Redis: `--save '' --appendonly no --maxclients 20000`.")
w("- jimd also pushes every message to the other 9 senders, which are in the room; the counts "
  "above are receivers only (Redis publishers receive nothing).")
w("")
w("jimd and Redis columns are medians over the rounds; jimd/Redis is the median of the per-round ratios "
  "(both servers measured in the same round), with each round's ratio in parentheses.")
w("")
w("| scenario | metric | jimd | Redis | jimd/Redis | target (issue 6) | |")
w("|---|---|---|---|---|---|---|")
out.extend(rows)
w("")
w("Reproduce: `bench/run.sh` (or `ROUNDS=1 bench/run.sh`). Single runs, e.g.:")
w("")
w("```")
w("build-bench/bin/jim-bench fanout -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout --proto redis -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout -p PORT -R 1000 -S 10 -M 2500 -P 64 --rate 500")
w("build-bench/bin/jim-bench connect -p PORT --server-pid PID -C 10000")
w("build-bench/bin/jim-bench storm -p PORT --server-pid PID -R 100 -S 1 --rate 200 -N 200")
w("```")
w("")
w("## Every run")
w("")
w("| round | run | proto | deliveries/s | p50 / p99 / max ms | lost | ns/delivery | other |")
w("|---|---|---|---|---|---|---|---|")
for r in runs:
    run = r["run"]
    lat = run.get("latency_ms") or run.get("latency_during_ms") or {}
    other = ""
    if run.get("scenario") == "connect":
        other = (f"{si(run.get('signins_per_s'))} sign-ins/s, "
                 f"{num(run.get('server_rss_per_conn_bytes'))} B/conn")
    elif run.get("scenario") == "storm":
        b = run.get("latency_before_ms") or {}
        other = (f"p99 before {num(b.get('p99'), '{:.1f}')} ms, during {num(lat.get('p99'), '{:.1f}')} ms, "
                 f"storm {num(run.get('storm_s'), '{:.1f}')} s")
    if "error" in run:
        other = "ERROR: " + run["error"]
    w(f"| {r['round']} | {run.get('label', '?')} | {run.get('proto', '?')} | {si(run.get('deliveries_per_s'))} | "
      f"{num(lat.get('p50'), '{:.1f}')} / {num(lat.get('p99'), '{:.1f}')} / {num(lat.get('max'), '{:.1f}')} | "
      f"{num(run.get('lost'))} | {num(run.get('server_cpu_ns_per_delivery'))} | {other} |")
w("")
w("<details><summary>Raw JSON lines</summary>")
w("")
w("```")
for r in runs:
    w(json.dumps(r, separators=(",", ":")))
w("```")
w("</details>")
sys.stdout.write("\n".join(out) + "\n")
