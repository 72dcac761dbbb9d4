#!/usr/bin/env bash
# Fails when a Catch2 test name would be misread by ctest or Catch's command line: a name that
# starts with "--" is taken for an option (the test never runs: "Unrecognised token"), and a ";"
# splits the name in CMake's lists (catch_discover_tests).
set -euo pipefail
dir=${1:-$(dirname "$0")}
if grep -rnE --include='*.cpp' 'TEST_CASE\("(--|[^"]*;)' "$dir"; then
  echo "check-test-names: the names above start with '--' or contain ';'" >&2
  exit 1
fi
