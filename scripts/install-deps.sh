#!/usr/bin/env bash
# Installs the Debian 12 packages jimd needs to build and test, plus any package named on the
# command line (bench/run.sh adds redis-server). Idempotent: it runs `apt-get update` and
# `apt-get install` only when something is missing.
set -euo pipefail

packages=(
  cmake g++ make ccache pkg-config
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
  libssl-dev libspdlog-dev catch2 libedit-dev
  socat python3 nats-server libnats-dev libsystemd-dev
  "$@"
)
# Optional extras: clang (libFuzzer target); failures to get them are not fatal.
optional=(clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
opt_missing=()
for p in "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || opt_missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ] && [ ${#opt_missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]} ${opt_missing[*]}" >&2
$sudo apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ${#opt_missing[@]} -gt 0 ]; then
  $sudo apt-get install -y -qq --no-install-recommends "${opt_missing[@]}" ||
    echo "install-deps: optional packages unavailable: ${opt_missing[*]}" >&2
fi
