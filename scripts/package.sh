#!/usr/bin/env bash
# Builds the Debian package of jimd: prints the path of jimd_VERSION_amd64.deb.
# Usage: scripts/package.sh [BUILD_DIR (default build-release)] [OUT_DIR (default BUILD_DIR)]
# An existing build directory is reused as it is configured (scripts/test.sh packages its
# RelWithDebInfo test build); a new one is configured Release. CPack strips the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
out=${2:-$build}
scripts/install-deps.sh dpkg-dev libsystemd-dev >&2
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DJIM_TESTS=OFF >&2
else
  cmake -S . -B "$build" >/dev/null  # picks up new sources and libsystemd
fi
grep -q '^SYSTEMD_FOUND:INTERNAL=1' "$build/CMakeCache.txt" || {
  echo "package.sh: libsystemd not found by CMake: the Type=notify unit needs sd_notify" >&2
  exit 1
}
cmake --build "$build" -j"$(nproc)" --target jimd jim jim_deb_files >&2
out=$(mkdir -p "$out" && cd "$out" && pwd)
rm -f "$out"/jimd_*_amd64.deb
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$out" >&2
ls "$out"/jimd_*_amd64.deb
