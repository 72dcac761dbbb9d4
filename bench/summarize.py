#!/usr/bin/env python3
"""Turns the JSON lines of bench/run.sh into bench/RESULTS.md: medians over the rounds, jimd next
to the Redis peers measured in the same round, the ratios, and the issues' targets. Reads only the
file it is given."""
import argparse
import json
import statistics
import sys

ap = argparse.ArgumentParser()
ap.add_argument("results")
for opt in ("date", "commit", "nproc", "cpu", "kernel", "redis", "load-before", "load-after", "seconds",
            "rounds", "quick", "fs", "redis-tls"):
    ap.add_argument("--" + opt, default="")
a = ap.parse_args()

runs = []
with open(a.results) as f:
    for line in f:
        line = line.strip()
        if line:
            runs.append(json.loads(line))
ROUNDS = sorted({r["round"] for r in runs if r["round"] > 0})


def get(run, key, sub=None):
    v = run.get(key)
    if sub is not None and isinstance(v, dict):
        v = v.get(sub)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and "error" not in run else None


def pick(label, variant):
    return [r for r in runs if r["run"].get("label") == label and r.get("variant") == variant]


def med(label, variant, key, sub=None):
    vals = [get(r["run"], key, sub) for r in pick(label, variant)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def total(label, variant, key):
    vals = [get(r["run"], key) for r in pick(label, variant)]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def one(label, variant, key, sub=None):
    for r in pick(label, variant):
        v = get(r["run"], key, sub)
        if v is not None:
            return v
    return None


def paired(label, variant, peer, key, sub=None, peer_label=None):
    """Per-round variant/peer ratios (both measured in the same round) and their median."""
    each = []
    for rnd in ROUNDS:
        x = [get(r["run"], key, sub) for r in pick(label, variant) if r["round"] == rnd]
        y = [get(r["run"], key, sub) for r in pick(peer_label or label, peer) if r["round"] == rnd]
        if x and y and x[0] is not None and y[0]:
            each.append(x[0] / y[0])
    return (statistics.median(each) if each else None), each


def ratio_text(label, variant, peer, key, sub=None, peer_label=None):
    m, each = paired(label, variant, peer, key, sub, peer_label)
    if m is None:
        return "n/a", None
    if len(each) == 1:
        return f"{m:.2f}×", m
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


def mark(ok):
    return "" if ok is None else ("met" if ok else "**not met**")


out = []
w = out.append

NAMES = {
    "always": "jimd `--fsync always` (default)",
    "everysec": "jimd `--fsync everysec`",
    "no": "jimd `--fsync no`",
    "pubsub": "Redis pub/sub (stores nothing)",
    "aof-always": "Redis XADD/XREAD, `appendfsync always`",
}

w("# jim-bench results" + (" (QUICK suite: not comparable)" if a.quick == "1" else ""))
w("")
w(f"Written by `bench/run.sh` on {a.date}, commit `{a.commit}`. Medians of {a.rounds} round(s); "
  f"each round starts fresh servers. jimd and Redis ran on the same machine, one after the other, "
  f"driven by the same jim-bench.")
w("")
w(f"- Machine: {a.nproc} CPUs, {a.cpu}, Linux {a.kernel}; {a.redis}.")
w(f"- Load average (1/5/15 min) before the suite: {a.load_before}; after: {a.load_after}. "
  f"The suite took {a.seconds} s. On a 2-core machine shared with other work, absolute numbers are noisy: "
  f"read the ratios, which come from back-to-back runs in the same round.")
w(f"- Data directories (jimd's journal, Redis' AOF): {a.fs}.")
w("- jimd: `-a 127.0.0.1 -p 0 --http-port 0 --rate-limit 0 --max-clients 20000 --log-level warn "
  "--kdf-iterations 1000 --fsync MODE` (the storm: default KDF); Redis pub/sub: `--save '' --appendonly no "
  "--maxclients 20000`; the durable Redis peer: `--save '' --appendonly yes --appendfsync always`, "
  "senders `XADD` to a stream, each receiver `XREAD BLOCK 0` from the last id it read (bench/README.md).")
w("- jimd also pushes every message to the other 9 senders, which are in the room; the counts "
  "are receivers only (Redis publishers receive nothing).")
w("")
w("Columns are medians over the rounds; a ratio is the median of the per-round ratios (both servers "
  "measured in the same round), each round's ratio in parentheses.")
w("")

# --- issue 12: fan-out with durability ------------------------------------------------------------
w("## Fan-out with durability on (issue 12)")
w("")
w("| fan-out (S=10, P=64, window 8) | server | deliveries/s | ÷ Redis pub/sub | ÷ Redis AOF stream | "
  "server CPU ns/delivery | p50 / p99 ms (saturated) | lost / dup / reord | target | |")
w("|---|---|---|---|---|---|---|---|---|---|")
for label, title in (("fanout-r1000", "R=1000"), ("fanout-r100", "R=100")):
    first = True
    for v in ("always", "everysec", "no", "pubsub", "aof-always"):
        if not pick(label, v):
            continue
        r_pub, m_pub = ratio_text(label, v, "pubsub", "deliveries_per_s") if v != "pubsub" else ("", None)
        r_aof = ratio_text(label, v, "aof-always", "deliveries_per_s")[0] if v != "aof-always" else ""
        target, ok = "", None
        if v == "always":
            target, ok = "≥ 1.0× Redis pub/sub", (None if m_pub is None else m_pub >= 1.0)
        lost, dup, reo = total(label, v, "lost"), total(label, v, "duplicated"), total(label, v, "reordered")
        w(f"| {title if first else ''} | {NAMES[v]} | {si(med(label, v, 'deliveries_per_s'))} | {r_pub} | {r_aof} | "
          f"{num(med(label, v, 'server_cpu_ns_per_delivery'))} | "
          f"{num(med(label, v, 'latency_ms', 'p50'), '{:.1f}')} / {num(med(label, v, 'latency_ms', 'p99'), '{:.1f}')} | "
          f"{num(lost)} / {num(dup)} / {num(reo)} | {target} | {mark(ok)} |")
        first = False
w("")

w("### Latency at 500 msg/s into R=1000 (S=10, 5 s)")
w("")
w("| server | p50 ms | p99 ms | max ms | p99 ÷ Redis pub/sub | server CPU ns/delivery | lost |")
w("|---|---|---|---|---|---|---|")
for v in ("always", "everysec", "no", "pubsub", "aof-always"):
    if not pick("latency-500", v):
        continue
    w(f"| {NAMES[v]} | {num(med('latency-500', v, 'latency_ms', 'p50'), '{:.1f}')} | "
      f"{num(med('latency-500', v, 'latency_ms', 'p99'), '{:.1f}')} | {num(med('latency-500', v, 'latency_ms', 'max'), '{:.1f}')} | "
      f"{ratio_text('latency-500', v, 'pubsub', 'latency_ms', 'p99')[0] if v != 'pubsub' else ''} | "
      f"{num(med('latency-500', v, 'server_cpu_ns_per_delivery'))} | {num(total('latency-500', v, 'lost'))} |")
w("")

# --- snapshots and start-up -----------------------------------------------------------------------
sizes = sorted({int(r["run"]["label"].split("-")[1]) for r in runs if r["run"].get("label", "").startswith("stall-")})
if sizes:
    w("### Snapshots: I/O-thread stall and start-up")
    w("")
    w("`#general` filled with N messages of 64 bytes (`--history-limit 1000000`, `--fsync no` for the fill), "
      "then: SIGKILL; start (replays the whole journal); probe for the stall without snapshots; stop (the "
      "exit snapshot); start (loads that snapshot); probe while `--autosave 2` snapshots back to back. The "
      "probe is one client sending `rooms` and waiting for the reply, 1 ms apart: its worst reply is the "
      "longest the I/O thread was kept from a client. The snapshot columns are jimd's own log lines.")
    w("")
    w("| stored messages | start-up: replay journal (bytes) | start-up: load snapshot (bytes) | probe p50 / p99 / max ms, no snapshots | "
      "probe p50 / p99 / max ms, `--autosave 2` | snapshots during the probe | per snapshot: I/O thread / capture / write ms (max) | server RSS peak MiB |")
    w("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        st, sn = f"stall-{n}", f"startup-{n}"
        lg = f"snaplog-{n}"

        def lat(variant):
            return (f"{num(one(st, variant, 'latency_ms', 'p50'), '{:.2f}')} / {num(one(st, variant, 'latency_ms', 'p99'), '{:.2f}')} / "
                    f"{num(one(st, variant, 'latency_ms', 'max'), '{:.1f}')}")
        jb, sb = one(sn, "journal", "journal_bytes"), one(sn, "snapshot", "snapshot_bytes")
        rss = one(st, "autosave-2", "server_rss_peak_kib")
        w(f"| {n:,} | {num(one(sn, 'journal', 'startup_s'), '{:.2f}')} s ({si(jb)}B) | "
          f"{num(one(sn, 'snapshot', 'startup_s'), '{:.2f}')} s ({si(sb)}B) | {lat('none')} | {lat('autosave-2')} | "
          f"{num(one(lg, 'jimd-log', 'snapshots'))} | {num(one(lg, 'jimd-log', 'io_thread_ms_max'), '{:.2f}')} / "
          f"{num(one(lg, 'jimd-log', 'capture_ms_max'))} / {num(one(lg, 'jimd-log', 'write_ms_max'))} | "
          f"{num(None if rss is None else rss / 1024)} |")
    w("")

# --- issue 14: TLS ---------------------------------------------------------------------------------
if pick("tls-r1000", "tls"):
    w("## Fan-out R=1000 over TLS (issue 14)")
    w("")
    if a.redis_tls != "1":
        w("This redis-server was built without TLS: no Redis TLS row.")
        w("")
    w("Plaintext and TLS back to back (jimd: on the same daemon, `--tls-cert`/`--tls-key`, which accepts both; "
      "Redis: `--tls-port` with `--tls-auth-clients no` vs the plain pub/sub server). ECDSA P-256 certificate, TLS 1.3.")
    w("")
    w("| server | deliveries/s plain | deliveries/s TLS | TLS ÷ plain | CPU ns/delivery plain | CPU ns/delivery TLS | TLS ÷ plain (CPU) | lost (TLS) |")
    w("|---|---|---|---|---|---|---|---|")
    for name, plain, tls in (("jimd (`--fsync always`)", "plain", "tls"), ("Redis pub/sub", "redis-plain", "redis-tls")):
        if not pick("tls-r1000", tls):
            continue
        w(f"| {name} | {si(med('tls-r1000', plain, 'deliveries_per_s'))} | {si(med('tls-r1000', tls, 'deliveries_per_s'))} | "
          f"{ratio_text('tls-r1000', tls, plain, 'deliveries_per_s')[0]} | {num(med('tls-r1000', plain, 'server_cpu_ns_per_delivery'))} | "
          f"{num(med('tls-r1000', tls, 'server_cpu_ns_per_delivery'))} | {ratio_text('tls-r1000', tls, plain, 'server_cpu_ns_per_delivery')[0]} | "
          f"{num(total('tls-r1000', tls, 'lost'))} |")
    if pick("tls-r1000", "redis-tls"):
        w(f"| jimd TLS ÷ Redis TLS | | | {ratio_text('tls-r1000', 'tls', 'redis-tls', 'deliveries_per_s')[0]} | | | "
          f"{ratio_text('tls-r1000', 'tls', 'redis-tls', 'server_cpu_ns_per_delivery')[0]} | |")
    w("")

# --- issue 6/14: connections and the sign-in storm ---------------------------------------------------
rows = []


def row(scenario, metric, jim, target, ok):
    rows.append(f"| {scenario} | {metric} | {jim} | {target} | {mark(ok)} |")


if pick("connect", "always"):
    rss = med("connect", "always", "server_rss_per_conn_bytes")
    sps = med("connect", "always", "signins_per_s")
    first, last = med("connect", "always", "signins_per_s_first10"), med("connect", "always", "signins_per_s_last10")
    conns = med("connect", "always", "connections")
    row(f"{num(conns)} idle signed-in connections", "server RSS growth per connection (bytes)", num(rss),
        "≤ 4096", None if rss is None else rss <= 4096)
    row("", "sign-ins/s at --kdf-iterations 1000 (200 at once)", si(sps), "≥ 20,000/s",
        None if sps is None else sps >= 20000)
    row("", "sign-ins/s, first 10 % / last 10 %", f"{si(first)} / {si(last)}", "flat as users grow",
        None if first is None or last is None else last >= 0.8 * first)
    row("", "server CPU µs per sign-in", num(med("connect", "always", "server_cpu_us_per_signin")), "", None)
if pick("storm", "always"):
    b99, d99 = med("storm", "always", "latency_before_ms", "p99"), med("storm", "always", "latency_during_ms", "p99")
    sr = med("storm", "always", "p99_during_over_before")
    row(f"storm: {num(med('storm', 'always', 'storm_users'))} sign-ins at the default KDF, chat 200 msg/s into "
        f"R={num(med('storm', 'always', 'receivers'))}", "chat p99 before → during (ms)",
        f"{num(b99, '{:.1f}')} → {num(d99, '{:.1f}')}", "", None)
    cr = med("storm", "always", "cycle_p99_ratio_median")
    if cr is None:  # one calm and one storm window per round
        row("", "p99 during / before (median of rounds)", num(sr, "{:.2f}×"), "≤ 2×", None if sr is None else sr <= 2)
    else:
        row("", f"p99 storm / calm, pooled over {num(med('storm', 'always', 'cycles'))} cycles (median of rounds)",
            num(sr, "{:.2f}×"), "≤ 2×", None if sr is None else sr <= 2)
        row("", "p99 storm / calm, median of the cycles' ratios (median of rounds)", num(cr, "{:.2f}×"), "≤ 2×",
            cr <= 2)
    row("", "storm duration (s) / sign-ins/s", f"{num(med('storm', 'always', 'storm_s'), '{:.1f}')} / "
        f"{num(med('storm', 'always', 'storm_signins_per_s'), '{:.1f}')}", "", None)
for label, what in (("resume-1k", "1k accounts"), ("resume-10k", "10k accounts"), ("resume-10k-hold", "10k accounts, all kept open"),
                    ("resume-10k-c50", "10k accounts"), ("resume-10k-hold-c50", "10k accounts, all kept open"),
                    ("resume-40k-hold-c50", "40k accounts (10k sign in), all kept open")):
    if not pick(label, "jim"):
        continue
    sps = med(label, "jim", "signins_per_s")
    row(f"reconnect storm: {num(med(label, 'jim', 'clients'))} clients resume by token, {what} "
        f"({num(med(label, 'jim', 'concurrency'))} at once)", "sign-ins/s / server CPU µs per sign-in",
        f"{si(sps)} / {num(med(label, 'jim', 'server_cpu_us_per_signin'), '{:.1f}')}", "≥ 20,000/s",
        None if sps is None else sps >= 20000)
if pick("resume-1k", "jim") and pick("resume-10k", "jim"):
    a, b = med("resume-1k", "jim", "server_cpu_us_per_signin"), med("resume-10k", "jim", "server_cpu_us_per_signin")
    row("", "CPU per sign-in, 10k ÷ 1k accounts", num(None if not a or b is None else b / a, "{:.2f}×"),
        "flat (≈ 1×)", None if not a or b is None else b / a <= 1.2)
if pick("resume-10k-hold-c50", "jim") and pick("resume-40k-hold-c50", "jim"):
    a, b = (med("resume-10k-hold-c50", "jim", "server_cpu_us_per_signin"),
            med("resume-40k-hold-c50", "jim", "server_cpu_us_per_signin"))
    row("", "CPU per sign-in, 40k ÷ 10k accounts (kept open, 50 at once)", num(None if not a or b is None else b / a, "{:.2f}×"),
        "flat (≈ 1×)", None if not a or b is None else b / a <= 1.2)
for redis_label, jim_label, at_once in (("resume", "resume-10k", ""), ("resume-c50", "resume-10k-c50", ", 50 at once"),
                                         ("resume-hold-c50", "resume-10k-hold-c50", ", 50 at once, all kept open")):
    if not pick(redis_label, "redis"):
        continue
    row(f"Redis: the same clients connect and PING{at_once}", "connections/s / server CPU µs per connection",
        f"{si(med(redis_label, 'redis', 'signins_per_s'))} / {num(med(redis_label, 'redis', 'server_cpu_us_per_signin'), '{:.1f}')}", "", None)
    if pick(jim_label, "jim"):
        row("", f"jimd ÷ Redis{at_once}: rate / CPU per connection",
            f"{ratio_text(jim_label, 'jim', 'redis', 'signins_per_s', peer_label=redis_label)[0]} / "
            f"{ratio_text(jim_label, 'jim', 'redis', 'server_cpu_us_per_signin', peer_label=redis_label)[0]}", "", None)
if rows:
    w("## Connections and sign-ins (issues 6 and 14)")
    w("")
    w("| scenario | metric | jimd | target | |")
    w("|---|---|---|---|---|")
    out.extend(rows)
    w("")

w("Reproduce: `bench/run.sh` (or `ROUNDS=1 bench/run.sh`). Single runs, e.g.:")
w("")
w("```")
w("build-bench/bin/jim-bench fanout -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout --proto redis -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout --proto redis-stream -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout --tls -p PORT --server-pid PID -R 1000 -S 10 -M 5000 -P 64 --window 8")
w("build-bench/bin/jim-bench fanout -p PORT -R 1000 -S 10 -M 2500 -P 64 --rate 500")
w("build-bench/bin/jim-bench probe -p PORT --server-pid PID --duration 12")
w("build-bench/bin/jim-bench connect -p PORT --server-pid PID -C 10000")
w("build-bench/bin/jim-bench storm -p PORT --server-pid PID -R 100 -S 1 --rate 200 -N 200 --concurrency 8 --before 5 --cycles 5 --storm-close end")
w("build-bench/bin/jim-bench resume -p PORT --server-pid PID -C 10000 --accounts 10000 --concurrency 500")
w("build-bench/bin/jim-bench resume --proto redis -p PORT --server-pid PID -C 10000 --concurrency 500")
w("build-bench/bin/jim-bench resume -p PORT --server-pid PID -C 10000 --accounts 10000 --concurrency 50")
w("build-bench/bin/jim-bench resume --proto redis -p PORT --server-pid PID -C 10000 --concurrency 50")
w("build-bench/bin/jim-bench resume -p PORT --server-pid PID -C 10000 --accounts 10000 --concurrency 50 --hold")
w("build-bench/bin/jim-bench resume --proto redis -p PORT --server-pid PID -C 10000 --concurrency 50 --hold")
w("```")
w("")
w("## Every run")
w("")
w("| round | run | variant | deliveries/s | p50 / p99 / max ms | lost | ns/delivery | other |")
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
        if run.get("cycle_p99_ratios"):
            other += ", cycle ratios " + " ".join(num(x, "{:.2f}") for x in run["cycle_p99_ratios"])
    elif run.get("scenario") == "resume":
        other = (f"{si(run.get('signins_per_s'))} sign-ins/s, {num(run.get('server_cpu_us_per_signin'), '{:.1f}')} µs CPU each, "
                 f"{num(run.get('failed'))} failed")
    elif run.get("scenario") == "probe":
        other = f"{run.get('requests')} probes, {run.get('over_10ms')} over 10 ms"
    elif "startup_s" in run:
        other = f"start-up {run['startup_s']:.2f} s"
    elif "snapshots" in run:
        other = f"{run['snapshots']} snapshots; loads {run.get('loads')}"
    if "error" in run:
        other = "ERROR: " + run["error"]
    w(f"| {r['round']} | {run.get('label', '?')} | {r.get('variant', '?')} | {si(run.get('deliveries_per_s'))} | "
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
