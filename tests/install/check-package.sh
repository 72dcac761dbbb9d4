#!/usr/bin/env bash
# Builds the Debian package from the build in $1 (scripts/package.sh) and checks it without
# touching this machine: control fields (Depends from dpkg-shlibdeps), files (dpkg-deb -x),
# the conffile, the maintainer scripts, an unpack into a throwaway root (dpkg --root), the
# unit (systemd-analyze verify, and the `systemd-analyze security` score, recorded in
# $2/security.txt), and lintian (every tag it reports must be overridden with a reason in
# packaging/lintian-overrides); then the real install -> upgrade -> remove -> purge cycle
# (check-lifecycle.sh, skipped without root).
# Usage: check-package.sh BUILD_DIR [REPORT_DIR (default: BUILD_DIR/package-check)]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: check-package.sh BUILD_DIR [REPORT_DIR]}" && pwd)
report=${2:-$build/package-check}
mkdir -p "$report"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail=0
bad() { echo "check-package: $*" >&2; fail=1; }

deb=$("$src/scripts/package.sh" "$build" "$work/out")
version=$(sed -n 's/^project(jimd VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ "$(basename "$deb")" = "jimd_${version}_amd64.deb" ] || bad "package named $(basename "$deb")"
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# --- control fields ----------------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = jimd ] || bad "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || bad "Version: $(field Version)"
[ "$(field Architecture)" = amd64 ] || bad "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
for dep in libc6 libstdc++6 libssl3 libsystemd0 adduser; do  # shlibdeps, plus adduser
  tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/ .*//' | grep -qxF "$dep" || bad "Depends lacks $dep"
done
grep -q '(>=' <<<"$depends" || bad "Depends has no versions: not from dpkg-shlibdeps"

# --- files -------------------------------------------------------------------------------------
root=$work/root
dpkg-deb -x "$deb" "$root"
expect() {  # expect TEST PATH
  test "$1" "$root/$2" || bad "missing or wrong: /$2 (test $1)"
}
expect -x usr/sbin/jimd
expect -x usr/bin/jim
expect -f etc/jimd/jimd.conf
expect -f lib/systemd/system/jimd.service
expect -f usr/share/man/man8/jimd.8.gz
expect -f usr/share/man/man1/jim.1.gz
expect -f usr/share/doc/jimd/copyright
expect -f usr/share/doc/jimd/changelog.gz
expect -f usr/share/lintian/overrides/jimd
for absent in usr/bin/jim-bench usr/etc usr/share/doc/jimd/LICENSE usr/share/man/man8/jimd.8; do
  [ ! -e "$root/$absent" ] || bad "/$absent should not be in the package"
done
grep -qx 'data-dir = /var/lib/jimd' "$root/etc/jimd/jimd.conf" || bad "jimd.conf: data-dir not set"
grep -qx 'log-dir = /var/log/jimd' "$root/etc/jimd/jimd.conf" || bad "jimd.conf: log-dir not set"
file "$root/usr/sbin/jimd" | grep -q 'stripped' && ! file "$root/usr/sbin/jimd" | grep -q 'not stripped' ||
  bad "jimd is not stripped"
"$root/usr/sbin/jimd" --version >/dev/null || bad "packaged jimd --version failed"
out=$("$root/usr/sbin/jimd" --check-config -c "$root/etc/jimd/jimd.conf" 2>&1) && [ "$out" = OK ] ||
  bad "packaged jimd.conf does not pass --check-config: $out"

# --- conffile and maintainer scripts -----------------------------------------------------------
ctl=$work/control
dpkg-deb -e "$deb" "$ctl"
[ "$(cat "$ctl/conffiles")" = /etc/jimd/jimd.conf ] || bad "conffiles: $(cat "$ctl/conffiles")"
for s in postinst prerm postrm; do
  [ "$(stat -c %a "$ctl/$s")" = 755 ] || bad "$s is not 0755"
  sh -n "$ctl/$s" || bad "$s: syntax error"
done
grep -q 'adduser --system --group' "$ctl/postinst" || bad "postinst creates no system user"
grep -q 'install -d -o jimd -g jimd -m 0750 "$dir"' "$ctl/postinst" || bad "postinst: no data dirs"
grep -q "deb-systemd-helper enable 'jimd.service'" "$ctl/postinst" || bad "postinst enables nothing"
grep -q '\[ -d /run/systemd/system \]' "$ctl/postinst" || bad "postinst: systemd not guarded"
grep -q 'rm -rf /var/lib/jimd /var/log/jimd' "$ctl/postrm" || bad "postrm: purge keeps data"

# --- unpacked into a throwaway root by dpkg itself (no maintainer script runs: they would
# create a user on this machine) -----------------------------------------------------------------
droot=$work/dpkg-root
mkdir -p "$droot/var/lib/dpkg/info" "$droot/var/lib/dpkg/updates"
touch "$droot/var/lib/dpkg/status" "$droot/var/lib/dpkg/available"
dpkg --root="$droot" --log=/dev/null --force-depends --unpack "$deb" >/dev/null ||
  bad "dpkg --root --unpack failed"
[ -x "$droot/usr/sbin/jimd" ] || bad "dpkg --root: /usr/sbin/jimd not unpacked"
dpkg --root="$droot" -s jimd | grep -qE '^ /etc/jimd/jimd.conf ([0-9a-f]{32}|newconffile)$' ||
  bad "dpkg does not track /etc/jimd/jimd.conf as a conffile"

# --- the unit ----------------------------------------------------------------------------------
unit=$root/lib/systemd/system/jimd.service
grep -qx 'Type=notify' "$unit" || bad "unit is not Type=notify"
for key in 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/jimd /var/log/jimd' 'NoNewPrivileges=yes' \
           'PrivateTmp=yes' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'CapabilityBoundingSet=' \
           'User=jimd' 'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qxF "$key" "$unit" || bad "unit lacks $key"
done
grep -q '^LimitNOFILE=[0-9]' "$unit" || bad "unit lacks LimitNOFILE"
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart: check a copy whose paths point into the extracted package.
  vdir=$work/verify
  mkdir -p "$vdir"
  sed "s#/usr/sbin/jimd#$root/usr/sbin/jimd#g" "$unit" > "$vdir/jimd.service"
  if ! verify=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$vdir/jimd.service" 2>&1); then
    bad "systemd-analyze verify failed: $verify"
  elif [ -n "$verify" ]; then
    echo "systemd-analyze verify says (not errors):"
    echo "$verify"
  fi
  if systemd-analyze security --offline=yes "$unit" >"$report/security.txt" 2>&1; then
    echo "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$report/security.txt")"
  else
    echo "systemd-analyze security --offline not available here: $(tail -n 1 "$report/security.txt")"
  fi
else
  echo "systemd-analyze not installed: the unit is not verified here"
fi

# --- lintian -----------------------------------------------------------------------------------
if command -v lintian >/dev/null; then
  lintian --info --display-info "$deb" >"$report/lintian.txt" 2>&1 || true
  tags=$(grep -E '^[EW]: ' "$report/lintian.txt" || true)
  if [ -n "$tags" ]; then
    bad "lintian tags that are neither fixed nor overridden with a reason:"
    echo "$tags" >&2
  else
    echo "lintian: no errors or warnings ($(grep -c '^[IN]: ' "$report/lintian.txt" || true) info lines, $report/lintian.txt)"
  fi
else
  echo "lintian not installed (scripts/install-deps.sh lintian): not run"
fi

# --- install, upgrade, remove, purge for real (in a copy-on-write overlay of this system) ---------
"$src/tests/install/check-lifecycle.sh" "$deb" || bad "the install/upgrade/remove/purge cycle failed"

[ "$fail" = 0 ] && echo "package OK: $(basename "$deb")"
exit "$fail"
