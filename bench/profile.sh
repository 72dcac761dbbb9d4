#!/usr/bin/env bash
# Profiles jimd under the R=1000 fan-out and prints where its time goes.
#
#   bench/profile.sh perf [M]        perf record (cpu-clock; works without hardware counters) of the
#                                    sending phase, plus syscall counts (default M=5000)
#   bench/profile.sh callgrind [M]   valgrind --tool=callgrind of the sending phase only (instrumentation
#                                    switched on after set-up), I/O thread (default M=1000)
#
# Output goes to a directory printed at the end (kept). Needs a Release build in build-bench
# (bench/run.sh makes one). Starts jimd itself on 127.0.0.1 and stops only that process.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-perf}
BUILD=${BUILD_DIR:-build-bench}
JIMD=$PWD/$BUILD/bin/jimd
BENCH=$PWD/$BUILD/bin/jim-bench
OUTDIR=$(mktemp -d /tmp/jimd-profile.XXXXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ -x $JIMD && -x $BENCH ]] || { echo "build first: bench/run.sh or make -C $BUILD jimd jim-bench" >&2; exit 2; }

JIMD_PID=""
cleanup() {
  if [[ -n $JIMD_PID ]] && kill -0 "$JIMD_PID" 2>/dev/null; then
    kill -TERM "$JIMD_PID"
    for _ in $(seq 300); do kill -0 "$JIMD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$JIMD_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

JIMD_ARGS=(-a 127.0.0.1 -p 0 --port-file "$OUTDIR/port" --http-port 0 --rate-limit 0 --kdf-iterations 1000
           --max-clients 20000 --throttle-loopback no --log-level warn --data-dir "$OUTDIR/data" --log-dir "$OUTDIR/data")

wait_port() {
  for _ in $(seq 600); do [[ -s $OUTDIR/port ]] && return 0; sleep 0.1; done
  echo "jimd did not start" >&2; exit 1
}
wait_ready() {  # waits for jim-bench's "connections ready" line (it pauses before sending)
  for _ in $(seq 6000); do grep -q "connections ready" "$OUTDIR/bench.err" 2>/dev/null && return 0; sleep 0.1; done
  echo "jim-bench set-up did not finish" >&2; exit 1
}

case $MODE in
  perf)
    M=${2:-5000}
    "$JIMD" "${JIMD_ARGS[@]}" >"$OUTDIR/jimd.out" 2>&1 &
    JIMD_PID=$!
    wait_port
    "$BENCH" fanout -p "$(cat "$OUTDIR/port")" --server-pid "$JIMD_PID" -R 1000 -S 10 -M "$M" --pause 1 \
      >"$OUTDIR/bench.json" 2>"$OUTDIR/bench.err" &
    BENCH_PID=$!
    wait_ready
    EV=syscalls:sys_enter_sendmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom
    EV=$EV,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,task-clock
    perf stat -e "$EV" -p "$JIMD_PID" -o "$OUTDIR/syscalls.txt" &
    STAT_PID=$!
    perf record -q -e cpu-clock -F 1999 -g -p "$JIMD_PID" -o "$OUTDIR/perf.data" >/dev/null 2>&1 &
    REC_PID=$!
    wait "$BENCH_PID" || true
    kill -INT "$STAT_PID" "$REC_PID"
    wait "$STAT_PID" "$REC_PID" 2>/dev/null || true
    cat "$OUTDIR/bench.err"
    grep -E "syscalls|task-clock" "$OUTDIR/syscalls.txt"
    echo "--- by binary"
    perf report -i "$OUTDIR/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -8
    echo "--- self time by function (top 30)"
    perf report -i "$OUTDIR/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -30 | cut -c1-160
    ;;
  callgrind)
    M=${2:-1000}
    valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no \
      --callgrind-out-file="$OUTDIR/callgrind.out.%p" "$JIMD" "${JIMD_ARGS[@]}" >"$OUTDIR/jimd.out" 2>&1 &
    JIMD_PID=$!
    wait_port
    "$BENCH" fanout -p "$(cat "$OUTDIR/port")" -R 1000 -S 10 -M "$M" --pause 2 --setup-timeout 600 --drain 10 \
      --max-time 300 >"$OUTDIR/bench.json" 2>"$OUTDIR/bench.err" &
    BENCH_PID=$!
    wait_ready
    callgrind_control -i on "$JIMD_PID" >/dev/null
    wait "$BENCH_PID" || true
    callgrind_control -i off "$JIMD_PID" >/dev/null
    cleanup
    JIMD_PID=""
    cat "$OUTDIR/bench.err"
    # The busiest thread file is the I/O thread.
    MAIN=$(ls -S "$OUTDIR"/callgrind.out.* | head -1)
    echo "--- $MAIN: inclusive"
    callgrind_annotate --inclusive=yes "$MAIN" 2>/dev/null | sed -n '1,60p' | cut -c1-200
    echo "--- $MAIN: self"
    callgrind_annotate "$MAIN" 2>/dev/null | sed -n '1,60p' | cut -c1-200
    ;;
  *) echo "usage: bench/profile.sh perf|callgrind [M]" >&2; exit 2 ;;
esac
echo "profile data kept in $OUTDIR"
