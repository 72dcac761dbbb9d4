#!/usr/bin/env bash
# The standard jim-bench suite: jimd next to Redis pub/sub on this machine, same load generator.
#
#   bench/run.sh               three rounds, median table in bench/RESULTS.md (15-20 minutes)
#   ROUNDS=1 bench/run.sh      one round
#   QUICK=1 bench/run.sh       a much smaller suite, to check the script itself (not for RESULTS.md:
#                              it writes bench/RESULTS-quick.md)
#   OUT=/tmp/r.md bench/run.sh write the table elsewhere
#
# Installs redis-server if missing, builds jimd and jim-bench (Release) if needed, starts every
# server itself on 127.0.0.1 and stops only those, by PID. Raw JSON lines are kept in the table's
# appendix. See bench/README.md for what each number means.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
QUICK=${QUICK:-0}
BUILD=${BUILD_DIR:-build-bench}
if [[ $QUICK == 1 ]]; then OUT=${OUT:-$ROOT/bench/RESULTS-quick.md}; else OUT=${OUT:-$ROOT/bench/RESULTS.md}; fi

log() { printf '[run.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- prerequisites -------------------------------------------------------------------------------
"$ROOT/scripts/install-deps.sh" redis-server  # and the build tools and python3 (summary table)
REDIS_SERVER=$(command -v redis-server)

# The commit the binaries are built from ("+dirty": with uncommitted changes to the code measured).
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- server common bench CMakeLists.txt 2>/dev/null || COMMIT="$COMMIT+dirty"
log "building jimd and jim-bench (Release) in $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target jimd jim-bench >/dev/null
JIMD=$ROOT/$BUILD/bin/jimd
BENCH=$ROOT/$BUILD/bin/jim-bench

# 10,000 idle connections plus the load generator's own: raise the fd limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 10200 )); then log "warning: fd limit $(ulimit -n); the connect scenario needs about 10,100"; fi

# jimd's data directory (and Redis' AOF) must be on a real disk: fdatasync on tmpfs is a no-op.
# /var/tmp is on disk on Debian even where /tmp is a tmpfs; BENCH_TMP overrides it.
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/jim-bench.XXXXXX")
FSTYPE=$(df --output=fstype "$WORK" | tail -1)
FSDEV=$(df --output=source "$WORK" | tail -1)
if [[ $FSTYPE == tmpfs || $FSTYPE == ramfs ]]; then
  log "warning: $WORK is on $FSTYPE: --fsync always costs nothing there (set BENCH_TMP to a disk)"
fi
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
JIMD_PID=""
REDIS_PID=""
REDIS_AOF_PID=""
REDIS_TLS_PID=""

# --- servers -------------------------------------------------------------------------------------
stop_pid() {  # stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL. Only PIDs this script started.
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid did not stop in 15 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$JIMD_PID"
  stop_pid "$REDIS_PID"
  stop_pid "$REDIS_AOF_PID"
  stop_pid "$REDIS_TLS_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A throw-away certificate for the TLS runs (jimd --tls-cert, redis-server --tls-cert-file).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
TLS_OPTS=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")

now_s() { date +%s.%N; }
since() { awk -v t0="$1" -v t1="$(now_s)" 'BEGIN { printf "%.3f", t1 - t0 }'; }  # seconds since $1

start_jimd_in() {  # start_jimd_in DIR [extra jimd options]: a daemon on DIR (kept as it is)
  local dir=$1
  shift
  mkdir -p "$dir"
  rm -f "$WORK/jimd.port"
  JIMD_T0=$(now_s)
  "$JIMD" -a 127.0.0.1 -p 0 --port-file "$WORK/jimd.port" --http-port 0 --rate-limit 0 \
    --max-clients 20000 --throttle-loopback no --log-level "${JIMD_LOG_LEVEL:-warn}" --data-dir "$dir" --log-dir "$dir.log" "$@" \
    >>"$WORK/jimd.out" 2>&1 &
  JIMD_PID=$!
  local polls=$(( ${START_WAIT:-30} * 100 ))
  for _ in $(seq "$polls"); do
    [[ -s $WORK/jimd.port ]] && break
    kill -0 "$JIMD_PID" 2>/dev/null || { log "jimd exited at start:"; tail -5 "$WORK/jimd.out" >&2; exit 1; }
    sleep 0.01
  done
  [[ -s $WORK/jimd.port ]] || { log "jimd wrote no port file in ${START_WAIT:-30} s"; exit 1; }
  JIMD_STARTUP_S=$(since "$JIMD_T0")
  JIMD_PORT=$(cat "$WORK/jimd.port")
}

start_jimd() {  # start_jimd [extra jimd options]: a fresh daemon with an empty data directory
  rm -rf "$WORK/jimd" "$WORK/jimd.log"
  start_jimd_in "$WORK/jimd" "$@"
}

stop_jimd() {
  stop_pid "$JIMD_PID"
  JIMD_PID=""
}

wait_listening() {  # wait_listening PORT PID LOGFILE
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { log "redis-server exited at start:"; tail -5 "$3" >&2; exit 1; }
    sleep 0.1
  done
  log "redis-server did not listen on $1 in 10 s"
  exit 1
}

# Redis pub/sub: stores nothing (the bar jimd must clear with durability on).
start_redis() {
  REDIS_PORT=$("$BENCH" free-port)
  "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 \
    --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  wait_listening "$REDIS_PORT" "$REDIS_PID" "$WORK/redis.log"
}

stop_redis() {
  stop_pid "$REDIS_PID"
  REDIS_PID=""
}

# The durable Redis peer: every write fsynced to the AOF before its reply (and before a blocked
# XREAD sees it). A fresh directory for each round.
start_redis_aof() {
  REDIS_AOF_PORT=$("$BENCH" free-port)
  rm -rf "$WORK/redis-aof" && mkdir -p "$WORK/redis-aof"
  "$REDIS_SERVER" --port "$REDIS_AOF_PORT" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync always --maxclients 20000 --daemonize no --dir "$WORK/redis-aof" \
    --logfile "$WORK/redis-aof.log" &
  REDIS_AOF_PID=$!
  wait_listening "$REDIS_AOF_PORT" "$REDIS_AOF_PID" "$WORK/redis-aof.log"
}

stop_redis_aof() {
  stop_pid "$REDIS_AOF_PID"
  REDIS_AOF_PID=""
}

# Redis pub/sub over TLS only (Debian's redis-server is built with TLS; checked below).
start_redis_tls() {
  REDIS_TLS_PORT=$("$BENCH" free-port)
  "$REDIS_SERVER" --port 0 --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$WORK/cert.pem" \
    --tls-key-file "$WORK/key.pem" --tls-auth-clients no --bind 127.0.0.1 --save '' \
    --appendonly no --maxclients 20000 --daemonize no --dir "$WORK" --logfile "$WORK/redis-tls.log" &
  REDIS_TLS_PID=$!
  wait_listening "$REDIS_TLS_PORT" "$REDIS_TLS_PID" "$WORK/redis-tls.log"
}

stop_redis_tls() {
  stop_pid "$REDIS_TLS_PID"
  REDIS_TLS_PID=""
}

REDIS_TLS=0
if ldd "$REDIS_SERVER" 2>/dev/null | grep -q libssl; then REDIS_TLS=1; fi

bench() {  # bench ROUND NAME VARIANT jim-bench-args...: one run, its JSON line tagged and kept
  local round=$1 name=$2 variant=$3
  shift 3
  local line rc=0
  line=$(timeout -k 5 900 "$BENCH" "$@" --label "$name" 2>"$WORK/human") || rc=$?
  sed "s/^/  [$variant] /" "$WORK/human" >&2
  if [[ -z $line ]]; then line="{\"label\":\"$name\",\"error\":\"jim-bench exit $rc\"}"; fi
  printf '{"round":%d,"variant":"%s","run":%s}\n' "$round" "$variant" "$line" >>"$RESULTS"
}

record() {  # record ROUND NAME VARIANT JSON-FIELDS: a measurement taken by this script
  printf '{"round":%d,"variant":"%s","run":{"label":"%s",%s}}\n' "$1" "$3" "$2" "$4" >>"$RESULTS"
}

# --- the suite -----------------------------------------------------------------------------------
if [[ $QUICK == 1 ]]; then
  M1000=500; M100=2000; MLAT=250; C=1000; N=20; SR=20; SNAP_SIZES="10000 50000"; PROBE_S=3
else
  M1000=5000; M100=20000; MLAT=2500; C=10000; N=200; SR=100; SNAP_SIZES="100000 1000000"; PROBE_S=12
fi
KDF_LOW=1000
FANOUT=(-S 10 -P 64 --window 8)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  start_redis
  start_redis_aof

  # Fan-out at full speed (window mode), R=1000 and R=100, 10 senders, 64-byte messages: jimd in
  # each --fsync mode, Redis pub/sub, Redis XADD/XREAD with appendfsync always.
  for spec in "fanout-r1000 1000 $M1000" "fanout-r100 100 $M100"; do
    read -r name r m <<<"$spec"
    for mode in always everysec no; do
      start_jimd --kdf-iterations $KDF_LOW --fsync $mode
      bench "$round" "$name" "$mode" fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R "$r" -M "$m" "${FANOUT[@]}"
      stop_jimd
    done
    bench "$round" "$name" pubsub fanout --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -R "$r" -M "$m" "${FANOUT[@]}"
    # The durable Redis peer is far slower at R=1000 (each entry wakes 1000 blocked XREADs that
    # must all be asked again): fewer messages keep the run short; the rates compare the same.
    bench "$round" "$name" aof-always fanout --proto redis-stream -p "$REDIS_AOF_PORT" --server-pid "$REDIS_AOF_PID" -R "$r" -M "$(( r == 1000 ? m * 2 / 5 : m ))" "${FANOUT[@]}"
  done

  # Latency at a fixed, modest rate: 500 msg/s into 1000 receivers (5 s), per mode and peer.
  for mode in always everysec no; do
    start_jimd --kdf-iterations $KDF_LOW --fsync $mode
    bench "$round" latency-500 "$mode" fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R 1000 -S 10 -M "$MLAT" -P 64 --rate 500
    stop_jimd
  done
  bench "$round" latency-500 pubsub fanout --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -R 1000 -S 10 -M "$MLAT" -P 64 --rate 500
  bench "$round" latency-500 aof-always fanout --proto redis-stream -p "$REDIS_AOF_PORT" --server-pid "$REDIS_AOF_PID" -R 1000 -S 10 -M "$MLAT" -P 64 --rate 500
  stop_redis_aof

  # TLS (issue 14): the same R=1000 fan-out, plaintext and TLS back to back on one daemon.
  start_jimd --kdf-iterations $KDF_LOW "${TLS_OPTS[@]}"
  bench "$round" tls-r1000 plain fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R 1000 -M "$M1000" "${FANOUT[@]}"
  bench "$round" tls-r1000 tls fanout --tls -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R 1000 -M "$M1000" "${FANOUT[@]}"
  stop_jimd
  bench "$round" tls-r1000 redis-plain fanout --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -R 1000 -M "$M1000" "${FANOUT[@]}"
  stop_redis
  if [[ $REDIS_TLS == 1 ]]; then
    start_redis_tls
    bench "$round" tls-r1000 redis-tls fanout --proto redis --tls -p "$REDIS_TLS_PORT" --server-pid "$REDIS_TLS_PID" -R 1000 -M "$M1000" "${FANOUT[@]}"
    stop_redis_tls
  fi

  # 10,000 idle signed-in connections (sign-ins at --kdf-iterations 1000, 200 in progress at once).
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" connect always connect -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --concurrency 200
  stop_jimd

  # Sign-in storm at the default KDF cost while 1 sender chats at 200 msg/s into SR receivers
  # (their own sign-ups 8 at a time: more would wait past --hash-queue-wait and get 503):
  # 5 cycles of 5 s calm, then N sign-ups at once until all are answered (their users hang up
  # at the end of each storm), compared within the run (one calm window against one storm
  # window was mostly noise: bench/README.md).
  start_jimd
  bench "$round" storm always storm -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R "$SR" -S 1 --rate 200 -N "$N" \
    --concurrency 8 --before 5 --after 1 --cycles 5 --storm-close end --setup-timeout 300
  stop_jimd

  # Reconnect storm (issue 14): C clients sign in again by resume token, 500 at a time, each
  # closing after its 200; the tokens come from password sign-ups made beforehand. On a daemon
  # with C/10 accounts and on one with C (flat in the number of accounts?), once with every
  # connection kept open; then Redis taking the same clients' connections and PINGs.
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-1k jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts $((C / 10)) --concurrency 500
  stop_jimd
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-10k jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts "$C" --concurrency 500
  stop_jimd
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-10k-hold jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts "$C" --concurrency 500 --hold
  stop_jimd
  # The same at 50 connections in flight: Redis' CPU per connection is about half its figure at
  # 500 there (no listen drops at either: the cost of many sockets in flight), so both are also
  # compared at 50.
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-10k-c50 jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts "$C" --concurrency 50
  stop_jimd
  # A reconnect storm proper: the clients stay connected (--hold), as after a server restart,
  # 50 in flight; once more with 4x the accounts (only C of them sign in) for flatness.
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-10k-hold-c50 jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts "$C" --concurrency 50 --hold
  stop_jimd
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" resume-40k-hold-c50 jim resume -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --accounts $((C * 4)) --concurrency 50 --hold --setup-timeout 300
  stop_jimd
  start_redis
  bench "$round" resume redis resume --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -C "$C" --concurrency 500
  bench "$round" resume-c50 redis resume --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -C "$C" --concurrency 50
  stop_redis
  start_redis  # a fresh server: the previous runs' connections are gone, but start alike
  bench "$round" resume-hold-c50 redis resume --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -C "$C" --concurrency 50 --hold
  stop_redis
done

# Snapshots and start-up (once, not per round: the 1M state takes a while to build).
# For each size: fill #general with N messages (--fsync no: only the state matters here), SIGKILL,
# start again (start-up = replaying the whole journal), probe the I/O thread without snapshots,
# stop (the exit snapshot), start again (start-up = loading that snapshot), probe while
# --autosave 2 snapshots the replica back to back.
SNAP_OPTS=(--kdf-iterations $KDF_LOW --history-limit 1000000)
export JIMD_LOG_LEVEL=info  # jimd's own timings of each load and snapshot
export START_WAIT=900       # loading a large state
for n in $SNAP_SIZES; do
  log "snapshot suite: $n messages"
  dir=$WORK/snap-$n
  rm -rf "$dir" "$dir.log"
  start_jimd_in "$dir" "${SNAP_OPTS[@]}" --fsync no --autosave 0
  bench 0 "fill-$n" fill fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R 1 -S 20 -M "$n" -P 64 --window 64 \
    --max-time 600 --drain 5
  kill -KILL "$JIMD_PID"; wait "$JIMD_PID" 2>/dev/null || true; JIMD_PID=""
  # Bytes of records: a segment's preallocated zeros after its last record are not counted.
  journal_bytes=$(python3 -c 'import sys; print(sum(len(open(f, "rb").read().rstrip(b"\0")) for f in sys.argv[1:]))' "$dir"/journal-*.log)

  start_jimd_in "$dir" "${SNAP_OPTS[@]}" --autosave 0
  record 0 "startup-$n" journal "\"startup_s\":$JIMD_STARTUP_S,\"journal_bytes\":$journal_bytes"
  bench 0 "stall-$n" none probe -p "$JIMD_PORT" --server-pid "$JIMD_PID" --duration "$PROBE_S"
  t0=$(now_s); stop_jimd; stop_s=$(since "$t0")
  snapshot_bytes=$(stat -c %s "$dir/jimd-state.json")

  start_jimd_in "$dir" "${SNAP_OPTS[@]}" --autosave 2
  record 0 "startup-$n" snapshot "\"startup_s\":$JIMD_STARTUP_S,\"snapshot_bytes\":$snapshot_bytes,\"stop_s\":$stop_s"
  bench 0 "stall-$n" autosave-2 probe -p "$JIMD_PORT" --server-pid "$JIMD_PID" --duration "$PROBE_S"
  stop_jimd
  # jimd's own account of each snapshot ("I/O thread X ms, capture Y ms, write Z ms") and loads.
  grep -ho 'loaded the snapshot.*\|snapshot (autosave) saved.*' "$dir.log"/*.log* 2>/dev/null |
    python3 -c '
import json, re, sys
snaps, loads = [], []
for line in sys.stdin:
    m = re.search(r"I/O thread ([\d.]+) ms, capture ([\d.]+) ms, write ([\d.]+) ms", line)
    if m: snaps.append([float(x) for x in m.groups()])
    m = re.search(r"in ([\d.]+) ms, replayed (\d+) journal records in ([\d.]+) ms", line)
    if m: loads.append([float(m.group(1)), int(m.group(2)), float(m.group(3))])
print(json.dumps({"snapshots": len(snaps), "io_thread_ms_max": max([s[0] for s in snaps], default=None),
                  "capture_ms_max": max([s[1] for s in snaps], default=None),
                  "write_ms_max": max([s[2] for s in snaps], default=None), "loads": loads})[1:-1])' >"$WORK/snaplog"
  record 0 "snaplog-$n" jimd-log "$(cat "$WORK/snaplog")"
  rm -rf "$dir" "$dir.log"
done
T_END=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table -----------------------------------------------------------------------------------
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 "$ROOT/bench/summarize.py" "$RESULTS" \
  --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$COMMIT" --nproc "$(nproc)" --cpu "$CPU_MODEL" \
  --kernel "$(uname -r)" --redis "$("$REDIS_SERVER" --version | sed 's/ sha=.*//')" \
  --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" --seconds $((T_END - T_START)) \
  --rounds "$ROUNDS" --quick "$QUICK" --fs "$FSTYPE on $FSDEV ($WORK)" --redis-tls "$REDIS_TLS" >"$OUT"
log "wrote $OUT ($((T_END - T_START)) s)"
