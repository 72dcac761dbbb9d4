#!/usr/bin/env bash
# Installs what is missing, builds and runs every test:
#   1. a normal build (warnings are errors) and the whole ctest suite;
#   1b. every shell example of README.md, web/README.md and protocol/PROTOCOL.md against a fresh
#      daemon (scripts/check-docs.sh, with the build-test binaries);
#   1c. the Debian package built from build-test and checked (tests/install/check-package.sh:
#      files, conffile, maintainer scripts, dpkg --root, systemd-analyze, lintian);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build and the whole suite again;
#   2b. a ThreadSanitizer build of the cluster tests only (the NATS client runs its own threads);
#   3. the web client end to end in headless chromium, over http and once over https/wss with a
#      throwaway CA (tests/browser/run.sh; skipped with a message if chromium cannot be installed);
#   4. the libFuzzer target for a bounded time (when clang is available).
# Set JIM_SKIP_SANITIZE=1, JIM_SKIP_BROWSER=1 or JIM_SKIP_FUZZ=1 to skip a stage locally.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

run_suite() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DJIM_WARNINGS_AS_ERRORS=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 300)
}

echo "== normal build (RelWithDebInfo) =="
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo

echo "== the documentation's shell examples =="
scripts/check-docs.sh --build build-test

echo "== the Debian package (CPack, from build-test) =="
scripts/install-deps.sh lintian
tests/install/check-package.sh build-test

if [ "${JIM_SKIP_BROWSER:-0}" != 1 ] && [ -x tests/browser/run.sh ]; then
  echo "== end-to-end in a real browser (chromium + playwright-core) =="
  JIMD="$PWD/build-test/bin/jimd" tests/browser/run.sh
fi

if [ "${JIM_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build =="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DJIM_SANITIZE=address,undefined

  echo "== ThreadSanitizer: the cluster tests (NATS client threads hand over to the I/O thread) =="
  cmake -S . -B build-tsan -DJIM_WARNINGS_AS_ERRORS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DJIM_SANITIZE=thread -DJIM_BENCH=OFF -DCMAKE_CXX_FLAGS=-Wno-tsan >/dev/null
  cmake --build build-tsan -j"$jobs" --target jim_cluster_tests
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --output-on-failure -R '^cluster:' --timeout 300)
fi

if [ "${JIM_SKIP_FUZZ:-0}" != 1 ] && [ -x scripts/run-fuzz.sh ]; then
  echo "== fuzzing the codec =="
  scripts/run-fuzz.sh 30
fi
echo "all tests passed"
