#!/usr/bin/env bash
# Builds the libFuzzer target jim_fuzz_codec with clang in its own build dir (build-fuzz) and
# runs it for a bounded time on a copy of the seed corpus (tests/fuzz/corpus is never written).
#
#   scripts/run-fuzz.sh [SECONDS] [extra libFuzzer flags...]     (default 30 s)
#
# Exit status: 0 if no crash was found (or clang is not installed: nothing to do),
# non-zero if the fuzzer found a crash; the crashing input is left in build-fuzz/artifacts/.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_ARG="${1:-30}"
shift || true
if ! [[ "$SECONDS_ARG" =~ ^[0-9]+$ ]] || [ "$SECONDS_ARG" -lt 1 ]; then
  echo "usage: $0 [SECONDS] [libFuzzer flags...]" >&2
  exit 2
fi

if ! command -v clang >/dev/null 2>&1 || ! command -v clang++ >/dev/null 2>&1; then
  echo "run-fuzz: clang/clang++ not installed; libFuzzer needs clang. Skipping fuzzing (nothing to do)."
  exit 0
fi

JOBS="${JOBS:-2}"
BUILD=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DJIM_FUZZ=ON -DJIM_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target jim_fuzz_codec -j "$JOBS"

# Work on a copy: libFuzzer adds the inputs it finds interesting to the corpus directory.
WORK="$BUILD/corpus"
ARTIFACTS="$BUILD/artifacts/"
rm -rf "$WORK"
mkdir -p "$WORK" "$ARTIFACTS"
cp tests/fuzz/corpus/* "$WORK/"

echo "run-fuzz: fuzzing jim_fuzz_codec for ${SECONDS_ARG}s (corpus copy in $WORK)"
status=0
"$BUILD/bin/jim_fuzz_codec" "$WORK" \
  -max_total_time="$SECONDS_ARG" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$ARTIFACTS" -print_final_stats=1 "$@" || status=$?

if [ "$status" -ne 0 ]; then
  echo "run-fuzz: FAILED (exit $status): crashing input(s) in $ARTIFACTS" >&2
  ls -l "$ARTIFACTS" >&2 || true
  exit "$status"
fi
echo "run-fuzz: no crash in ${SECONDS_ARG}s"
