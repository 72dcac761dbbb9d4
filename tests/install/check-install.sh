#!/usr/bin/env bash
# Installs the build in $1 into a temporary prefix (cmake --install) and checks that every file
# is where GNUInstallDirs puts it and that the man pages render without a single warning.
# Usage: check-install.sh BUILD_DIR [HAS_BENCH (1|0, default 1)]
set -euo pipefail
build=${1:?usage: check-install.sh BUILD_DIR [HAS_BENCH]}
has_bench=${2:-1}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null

fail=0
expect() {  # expect TEST PATH
  if ! test "$1" "$prefix/$2"; then
    echo "missing or wrong: $2 (test $1)" >&2
    fail=1
  fi
}
expect -x sbin/jimd
expect -x bin/jim
[ "$has_bench" = 1 ] && expect -x bin/jim-bench
[ -e "$prefix/bin/jimd" ] && { echo "jimd installed twice (bin/jimd)" >&2; fail=1; }
expect -f etc/jimd/jimd.conf
expect -f share/man/man8/jimd.8
expect -f share/man/man1/jim.1
expect -f share/doc/jimd/LICENSE
cmp -s "$prefix/etc/jimd/jimd.conf" "$(dirname "$0")/../../config/jimd.conf" ||
  { echo "etc/jimd/jimd.conf differs from config/jimd.conf" >&2; fail=1; }

# The installed binaries run from their new place.
"$prefix/sbin/jimd" --version >/dev/null || { echo "installed jimd --version failed" >&2; fail=1; }
"$prefix/bin/jim" --version >/dev/null || { echo "installed jim --version failed" >&2; fail=1; }

# The man pages render with every groff warning enabled and say nothing on stderr.
render() {  # render PAGE: prints the warnings
  if command -v groff >/dev/null; then
    groff -man -Tutf8 -ww -z "$1" 2>&1 >/dev/null
  elif command -v mandoc >/dev/null; then
    mandoc -Tlint -Wwarning "$1" 2>&1 || true
  else
    MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null
  fi
}
for page in share/man/man8/jimd.8 share/man/man1/jim.1; do
  warnings=$(render "$prefix/$page")
  if [ -n "$warnings" ]; then
    echo "$page renders with warnings:" >&2
    echo "$warnings" >&2
    fail=1
  fi
done

# Every long option of jimd --help and jim --help should be in its man page: a missing one is
# reported (a warning for now, while options are being added in parallel; make it fail later).
check_options() {  # check_options BINARY PAGE
  local opt
  for opt in $("$1" --help | grep -oE '^ +(-[a-zA-Z] \[ )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+'); do
    if ! grep -qF -- "$(sed 's/-/\\-/g' <<<"$opt")" "$2"; then
      echo "$(basename "$2") does not document $opt" >&2
    fi
  done
}
check_options "$prefix/sbin/jimd" "$prefix/share/man/man8/jimd.8"
check_options "$prefix/bin/jim" "$prefix/share/man/man1/jim.1"

[ "$fail" = 0 ] && echo "install OK: $(cd "$prefix" && find . -type f | wc -l) files"
exit "$fail"
