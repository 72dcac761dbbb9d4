#!/usr/bin/env bash
# The standard jim-bench suite: jimd next to Redis pub/sub on this machine, same load generator.
#
#   bench/run.sh               three rounds, median table in bench/RESULTS.md (about 6-10 minutes)
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

WORK=$(mktemp -d /tmp/jim-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
JIMD_PID=""
REDIS_PID=""

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
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_jimd() {  # start_jimd [extra jimd options]: a fresh daemon with an empty data directory
  rm -rf "$WORK/jimd" && mkdir -p "$WORK/jimd"
  rm -f "$WORK/jimd.port"
  "$JIMD" -a 127.0.0.1 -p 0 --port-file "$WORK/jimd.port" --http-port 0 --rate-limit 0 \
    --max-clients 20000 --throttle-loopback no --log-level warn --data-dir "$WORK/jimd" --log-dir "$WORK/jimd" "$@" \
    >>"$WORK/jimd.out" 2>&1 &
  JIMD_PID=$!
  for _ in $(seq 100); do
    [[ -s $WORK/jimd.port ]] && break
    kill -0 "$JIMD_PID" 2>/dev/null || { log "jimd exited at start:"; tail -5 "$WORK/jimd.out" >&2; exit 1; }
    sleep 0.1
  done
  [[ -s $WORK/jimd.port ]] || { log "jimd wrote no port file in 10 s"; exit 1; }
  JIMD_PORT=$(cat "$WORK/jimd.port")
}

stop_jimd() {
  stop_pid "$JIMD_PID"
  JIMD_PID=""
}

start_redis() {
  REDIS_PORT=$("$BENCH" free-port)
  "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 \
    --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then return 0; fi
    kill -0 "$REDIS_PID" 2>/dev/null || { log "redis-server exited at start:"; tail -5 "$WORK/redis.log" >&2; exit 1; }
    sleep 0.1
  done
  log "redis-server did not listen on $REDIS_PORT in 10 s"
  exit 1
}

stop_redis() {
  stop_pid "$REDIS_PID"
  REDIS_PID=""
}

bench() {  # bench ROUND NAME jim-bench-args...: one run, its JSON line tagged and kept
  local round=$1 name=$2
  shift 2
  local line rc=0
  line=$(timeout -k 5 400 "$BENCH" "$@" --label "$name" 2>"$WORK/human") || rc=$?
  cat "$WORK/human" >&2
  if [[ -z $line ]]; then line="{\"label\":\"$name\",\"error\":\"jim-bench exit $rc\"}"; fi
  printf '{"round":%d,"run":%s}\n' "$round" "$line" >>"$RESULTS"
}

# --- the suite -----------------------------------------------------------------------------------
if [[ $QUICK == 1 ]]; then
  M1000=500; M100=2000; MLAT=250; C=1000; N=20; SR=20
else
  M1000=5000; M100=20000; MLAT=2500; C=10000; N=200; SR=100
fi
KDF_LOW=1000

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  start_redis

  # Fan-out at full speed (window mode), R=1000 and R=100, 10 senders, 64-byte messages.
  for spec in "fanout-r1000 1000 $M1000" "fanout-r100 100 $M100"; do
    read -r name r m <<<"$spec"
    start_jimd --kdf-iterations $KDF_LOW
    bench "$round" "$name" fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R "$r" -S 10 -M "$m" -P 64 --window 8
    stop_jimd
    bench "$round" "$name" fanout --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -R "$r" -S 10 -M "$m" -P 64 --window 8
  done

  # Latency at a fixed, modest rate: 500 msg/s into 1000 receivers (5 s).
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" latency-500 fanout -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R 1000 -S 10 -M "$MLAT" -P 64 --rate 500
  stop_jimd
  bench "$round" latency-500 fanout --proto redis -p "$REDIS_PORT" --server-pid "$REDIS_PID" -R 1000 -S 10 -M "$MLAT" -P 64 --rate 500
  stop_redis

  # 10,000 idle signed-in connections (sign-ins at --kdf-iterations 1000, 200 in progress at once).
  start_jimd --kdf-iterations $KDF_LOW
  bench "$round" connect connect -p "$JIMD_PORT" --server-pid "$JIMD_PID" -C "$C" --concurrency 200
  stop_jimd

  # Sign-in storm at the default KDF cost while 1 sender chats at 200 msg/s into SR receivers.
  start_jimd
  bench "$round" storm storm -p "$JIMD_PORT" --server-pid "$JIMD_PID" -R "$SR" -S 1 --rate 200 -N "$N" \
    --before 3 --after 1 --max-time 90 --setup-timeout 180
  stop_jimd
done
T_END=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table -----------------------------------------------------------------------------------
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 "$ROOT/bench/summarize.py" "$RESULTS" \
  --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$COMMIT" --nproc "$(nproc)" --cpu "$CPU_MODEL" \
  --kernel "$(uname -r)" --redis "$("$REDIS_SERVER" --version | sed 's/ sha=.*//')" \
  --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" --seconds $((T_END - T_START)) \
  --rounds "$ROUNDS" --quick "$QUICK" >"$OUT"
log "wrote $OUT ($((T_END - T_START)) s)"
