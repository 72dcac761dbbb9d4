#!/usr/bin/env bash
# Installs what is missing, builds jimd (Release) and starts it in the foreground with
# working defaults: all addresses, port 7777, web client on 7780, data in ./data, logs in ./logs.
# Extra arguments go to jimd (e.g. scripts/run.sh -p 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DJIM_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target jimd jim
exec build-release/bin/jimd "$@"  # defaults: ./data and ./logs under the repository root
