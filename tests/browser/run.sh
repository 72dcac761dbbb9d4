#!/usr/bin/env bash
# End-to-end browser test of the web client: installs what it needs (Debian's chromium and fonts with
# apt-get, playwright-core with npm; both idempotent), runs the web client's logic tests in
# node, then drives two Chromium pages and a raw TCP client against a jimd it starts itself, and
# once more over https/wss with a throwaway CA (tls.spec.mjs), and with two devices of one
# account and the moderation of rooms and accounts (devices.spec.mjs).
#
#   JIMD=build-test/bin/jimd tests/browser/run.sh      (JIMD defaults to the newest build*/bin/jimd)
#
# Exits 0 with a "SKIPPED: ..." line only when chromium (or node) cannot be installed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@";
  else return 1; fi
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq >/dev/null || return 1
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] && ! installed chromium; then
  echo "browser test: installing chromium (apt-get)"
  apt_install chromium fonts-dejavu-core || true
fi
if [ ! -x "$chromium" ]; then
  echo "SKIPPED: browser test: chromium is not installed and could not be installed with apt-get (no root, no apt, or no package repository)"
  exit 0
fi

# Fonts with emoji and CJK glyphs, so that such messages show as text and not as boxes (and the
# screenshot shows them): Debian's colour emoji font and the small WenQuanYi Micro Hei (1.6 MB;
# Chinese, Japanese kana and Korean hangul). Missing fonts are not fatal here: the end-to-end
# test checks which font the browser really used and fails when one is missing.
fonts=()
for f in fonts-noto-color-emoji fonts-wqy-microhei; do installed "$f" || fonts+=("$f"); done
if [ "${#fonts[@]}" -gt 0 ]; then
  echo "browser test: installing ${fonts[*]} (apt-get)"
  apt_install "${fonts[@]}" || echo "browser test: could not install ${fonts[*]}"
fi

if ! command -v certutil >/dev/null 2>&1; then
  echo "browser test: installing libnss3-tools (apt-get; certutil, to trust the https test's CA)"
  apt_install libnss3-tools || echo "browser test: could not install libnss3-tools"
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser test: installing nodejs and npm (apt-get)"
  apt_install nodejs npm || true
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIPPED: browser test: node and npm are not installed and could not be installed with apt-get"
  exit 0
fi

cd "$here"
if ! node -e 'const deps=require("./package.json").dependencies;
              for (const n in deps) if (require("./node_modules/"+n+"/package.json").version!==deps[n]) process.exit(1)' 2>/dev/null; then
  echo "browser test: installing playwright-core and axe-core (npm ci)"
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
fi

echo "browser test: web client logic (node --test)"
timeout 60 node --test logic.test.mjs

echo "browser test: end to end in $("$chromium" --version 2>/dev/null | head -1 || echo chromium)"
export CHROMIUM="$chromium"
cd "$root"
status=0
timeout 300 node "$here/chat.spec.mjs" || status=$?
# Several devices of one account, and moderation seen by the moderated (issue 16): a daemon of
# its own with the default --max-sessions (chat.spec.mjs needs 1 for its takeover steps).
echo "browser test: several devices, moderation (devices.spec.mjs)"
timeout 220 node "$here/devices.spec.mjs" || status=$?
# The same web client once more over https and wss (issue 14): a throwaway CA trusted through an
# NSS database, hence certutil (libnss3-tools; without it the spec pins the server key instead).
echo "browser test: over https and wss (tls.spec.mjs)"
timeout 180 node "$here/tls.spec.mjs" || status=$?
exit "$status"
