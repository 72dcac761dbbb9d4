#!/usr/bin/env bash
# Installs what is missing, builds and runs every test:
#   1. a normal build (warnings are errors) of what ships (jimd, jim, jim-bench) and the sans-io
#      unit tests, which run here; the socket-level suites (server, integration, cluster) are
#      built and run once, in stage 2, under the sanitizers (a fresh 2-core CI machine has 40
#      minutes: compiling them twice was half of that);
#   1b. every shell example of README.md, web/README.md and protocol/PROTOCOL.md against a fresh
#      daemon (scripts/check-docs.sh, with the build-test binaries);
#   1c. the Debian package built from build-test and checked (tests/install/check-package.sh:
#      files, conffile, maintainer scripts, dpkg --root, systemd-analyze, lintian);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build and the whole ctest suite;
#   2b. a ThreadSanitizer build of the cluster tests only (the NATS client runs its own threads);
#   3. the web client end to end in headless chromium, over http and once over https/wss with a
#      throwaway CA (tests/browser/run.sh; skipped with a message if chromium cannot be installed);
#   4. the libFuzzer target for a bounded time (when clang is available).
# Set JIM_SKIP_SANITIZE=1, JIM_SKIP_BROWSER=1 or JIM_SKIP_FUZZ=1 to skip a stage locally (without
# the sanitizer stage, stage 1 builds and runs the whole suite instead).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

# Each stage says how long it took (the CI budget is 40 minutes on 2 cores).
stage() {
  [ -n "${stage_name:-}" ] && echo "-- ${stage_name}: $((SECONDS - stage_start)) s (total ${SECONDS} s)"
  stage_name=$1 stage_start=$SECONDS
  echo "== $1 =="
}

stage "normal build (RelWithDebInfo): what ships, and the sans-io unit tests"
cmake -S . -B build-test -DJIM_WARNINGS_AS_ERRORS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [ "${JIM_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake --build build-test -j"$jobs" --target jimd jim jim-bench jim_unit_tests jim_client_tests
  (cd build-test && ctest --output-on-failure -j"$jobs" --timeout 300 -R '^(unit|client|install):')
else  # no sanitizer stage: the whole suite runs here
  cmake --build build-test -j"$jobs"
  (cd build-test && ctest --output-on-failure -j"$jobs" --timeout 300)
fi

stage "the documentation's shell examples"
scripts/check-docs.sh --build build-test

stage "the Debian package (CPack, from build-test)"
scripts/install-deps.sh lintian
tests/install/check-package.sh build-test

if [ "${JIM_SKIP_BROWSER:-0}" != 1 ] && [ -x tests/browser/run.sh ]; then
  stage "end-to-end in a real browser (chromium + playwright-core)"
  JIMD="$PWD/build-test/bin/jimd" tests/browser/run.sh
fi

if [ "${JIM_SKIP_SANITIZE:-0}" != 1 ]; then
  stage "AddressSanitizer + UndefinedBehaviorSanitizer build, and the whole suite"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  cmake -S . -B build-asan -DJIM_WARNINGS_AS_ERRORS=ON -DCMAKE_BUILD_TYPE=Debug \
    -DJIM_SANITIZE=address,undefined -DJIM_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 300)

  stage "ThreadSanitizer: the cluster tests (NATS client threads hand over to the I/O thread)"
  cmake -S . -B build-tsan -DJIM_WARNINGS_AS_ERRORS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DJIM_SANITIZE=thread -DJIM_BENCH=OFF -DCMAKE_CXX_FLAGS=-Wno-tsan >/dev/null
  cmake --build build-tsan -j"$jobs" --target jim_cluster_tests
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --output-on-failure -R '^cluster:' --timeout 300)
fi

if [ "${JIM_SKIP_FUZZ:-0}" != 1 ] && [ -x scripts/run-fuzz.sh ]; then
  stage "fuzzing the codec"
  scripts/run-fuzz.sh 30
fi
stage "done"
echo "all tests passed"
