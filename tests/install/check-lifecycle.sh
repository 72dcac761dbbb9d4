#!/usr/bin/env bash
# The package's life on a real Debian system, with its maintainer scripts run for real:
# install -> the daemon runs as the jimd user on the packaged config -> upgrade to a package with
# a bumped version (and a changed conffile that the admin has edited) -> the data survives ->
# remove -> purge, then nothing of the package is left but the jimd user.
#
# The "system" is this machine's own root seen through a copy-on-write overlay (overlayfs,
# lower = /, upper = a tmpfs) in a private mount namespace (unshare --mount), entered with
# chroot: dpkg, adduser and deb-systemd-helper change only the overlay, which vanishes at the
# end. No systemd runs there (as in a container or a chroot), so the maintainer scripts must
# do without it; what they leave behind is read from the overlay's upper layer.
# Needs root (mounts); otherwise prints why it is skipped and exits 0 (77 with --strict).
# Usage: check-lifecycle.sh PACKAGE.deb
set -euo pipefail
deb=$(realpath "${1:?usage: check-lifecycle.sh PACKAGE.deb}")
strict=${2:-}

skip() {
  echo "check-lifecycle: skipped: $*"
  [ "$strict" = --strict ] && exit 77
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (a mount namespace and an overlay of /)"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
if [ -z "${JIMD_LIFECYCLE_INSIDE:-}" ]; then
  unshare --mount true 2>/dev/null || skip "cannot make a mount namespace here"
  # Everything below runs again inside a private mount namespace: mounts vanish with it.
  exec env JIMD_LIFECYCLE_INSIDE=1 unshare --mount --propagation private "$0" "$@"
fi

fail=0
bad() { echo "check-lifecycle: $*" >&2; fail=1; }

work=$(mktemp -d /tmp/jimd-lifecycle.XXXXXX)
trap 'umount -R "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
mount -t tmpfs -o size=512m tmpfs "$work"
mkdir -p "$work/upper" "$work/overlay-work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root" ||
  skip "cannot mount an overlay of / here"
root=$work/root
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"  # no /run/systemd/system: systemd is not running
mount -t tmpfs tmpfs "$root/tmp"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# Quicker, for a root that vanishes anyway: no fsync by dpkg, no man-db index rebuild.
dpkg_() { in_root dpkg --force-unsafe-io "$@"; }
rm -f "$root/var/lib/man-db/auto-update"

if in_root dpkg -s jimd >/dev/null 2>&1; then
  skip "jimd is installed on this machine: the check needs a system without it"
fi
if in_root getent passwd jimd >/dev/null; then
  skip "a jimd user exists on this machine already"
fi

# --- the second package: the same files, a bumped version, a changed conffile ----------------
version=$(dpkg-deb -f "$deb" Version)
next="$version+lifecycle1"
mkdir -p "$work/pkg"
dpkg-deb -R "$deb" "$work/pkg/tree"
sed -i "s/^Version: .*/Version: $next/" "$work/pkg/tree/DEBIAN/control"
echo "# added by the upgrade ($next)" >>"$work/pkg/tree/etc/jimd/jimd.conf"
(cd "$work/pkg/tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort |
  xargs -d '\n' md5sum >DEBIAN/md5sums)
dpkg-deb -Zgzip -z1 --root-owner-group -b "$work/pkg/tree" "$work/pkg/upgrade.deb" >/dev/null
cp "$deb" "$root/tmp/first.deb"
cp "$work/pkg/upgrade.deb" "$root/tmp/upgrade.deb"

status() { in_root dpkg-query -W -f '${db:Status-Abbrev}${Version}' jimd 2>/dev/null | tr -s ' '; }

# Runs the installed daemon as the jimd user on the packaged config (ephemeral ports on
# loopback, cheap hashing), sends `jim` lines as alice, stops it with SIGTERM. Prints jim's output.
run_daemon() {  # run_daemon LINES
  rm -f "$root/tmp/port"
  chroot "$root" setpriv --reuid=jimd --regid=jimd --clear-groups \
    /usr/sbin/jimd -c /etc/jimd/jimd.conf -a 127.0.0.1 -p 0 --http-port 0 \
    --port-file /tmp/port --kdf-iterations 1000 --log-level warn >"$work/daemon.log" 2>&1 &
  local pid=$! port=
  for _ in $(seq 1 100); do
    port=$(cat "$root/tmp/port" 2>/dev/null || true)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    bad "the installed jimd did not start: $(cat "$work/daemon.log")"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return
  fi
  # jim keeps its resume token under $HOME: the throwaway /tmp, not root's home.
  printf '%s\n' "$1" | in_root env HOME=/tmp JIM_PASSWORD=pw /usr/bin/jim -a 127.0.0.1 -p "$port" \
    -u alice 2>&1 || true
  kill -TERM "$pid"
  wait "$pid" || bad "jimd exited with $? after SIGTERM: $(cat "$work/daemon.log")"
}

t0=$(date +%s%N)
phase() { echo "$1 (at $(( ($(date +%s%N) - t0) / 1000000 )) ms)"; }

# --- install -------------------------------------------------------------------------------
phase "install $(basename "$deb")"
dpkg_ -i /tmp/first.deb >"$work/install.log" 2>&1 || bad "dpkg -i failed: $(cat "$work/install.log")"
[ "$(status)" = "ii $version" ] || bad "after install: status '$(status)'"
user=$(in_root getent passwd jimd || true)
[ -n "$user" ] || bad "no jimd user"
uid=$(cut -d: -f3 <<<"$user")
[ -n "$uid" ] && [ "$uid" -lt 1000 ] || bad "jimd is not a system user: $user"
[ "$(cut -d: -f7 <<<"$user")" = /usr/sbin/nologin ] || bad "jimd has a login shell: $user"
in_root getent group jimd >/dev/null || bad "no jimd group"
for d in /var/lib/jimd /var/log/jimd; do
  [ "$(in_root stat -c '%U:%G %a' "$d" 2>/dev/null)" = "jimd:jimd 750" ] ||
    bad "$d: $(in_root stat -c '%U:%G %a' "$d" 2>&1)"
done
[ "$(in_root stat -c '%U:%G %a' /etc/jimd/jimd.conf)" = "root:jimd 640" ] ||
  bad "/etc/jimd/jimd.conf: $(in_root stat -c '%U:%G %a' /etc/jimd/jimd.conf)"
[ -L "$root/etc/systemd/system/multi-user.target.wants/jimd.service" ] ||
  bad "the service is not enabled (no multi-user.target.wants link)"
grep -q 'systemctl\|Failed' "$work/install.log" && bad "install printed: $(cat "$work/install.log")"

phase "run the installed daemon"
out=$(run_daemon 'before the upgrade')
[ -s "$root/var/lib/jimd/jimd-state.json" ] || bad "the daemon saved no snapshot in /var/lib/jimd: $out"
[ "$(in_root stat -c %U /var/lib/jimd/jimd-state.json 2>/dev/null)" = jimd ] || bad "snapshot not owned by jimd"
ls "$root"/var/log/jimd/* >/dev/null 2>&1 || bad "no log file in /var/log/jimd"

# --- upgrade, with the admin's edit of the conffile ------------------------------------------
echo "# the admin's line" >>"$root/etc/jimd/jimd.conf"
phase "upgrade to $next"
dpkg_ -i --force-confdef --force-confold /tmp/upgrade.deb >"$work/upgrade.log" 2>&1 ||
  bad "upgrade failed: $(cat "$work/upgrade.log")"
[ "$(status)" = "ii $next" ] || bad "after upgrade: status '$(status)'"
grep -q "the admin's line" "$root/etc/jimd/jimd.conf" || bad "the upgrade lost the admin's conffile edit"
grep -q "added by the upgrade" "$root/etc/jimd/jimd.conf.dpkg-dist" 2>/dev/null ||
  bad "the upgrade's conffile is not beside it as jimd.conf.dpkg-dist"
[ "$(in_root getent passwd jimd | cut -d: -f3)" = "$uid" ] || bad "the upgrade changed the jimd uid"
out=$(run_daemon '/history 5')
grep -q 'before the upgrade' <<<"$out" || bad "the message from before the upgrade is gone: $out"
rm -f "$root/etc/jimd/jimd.conf.dpkg-dist"

# --- remove: the program goes, configuration and data stay ------------------------------------
phase "remove"
dpkg_ -r jimd >"$work/remove.log" 2>&1 || bad "dpkg -r failed: $(cat "$work/remove.log")"
[ "$(status)" = "rc $next" ] || bad "after remove: status '$(status)'"
[ ! -e "$root/usr/sbin/jimd" ] || bad "/usr/sbin/jimd is still there after remove"
[ -f "$root/etc/jimd/jimd.conf" ] || bad "remove deleted the conffile"
[ -s "$root/var/lib/jimd/jimd-state.json" ] || bad "remove deleted the data"

# --- purge: nothing left but the user ------------------------------------------------------------
phase "purge"
dpkg_ --purge jimd >"$work/purge.log" 2>&1 || bad "dpkg --purge failed: $(cat "$work/purge.log")"
in_root dpkg -s jimd >/dev/null 2>&1 && bad "dpkg still knows jimd after purge"
for gone in /etc/jimd /var/lib/jimd /var/log/jimd /usr/sbin/jimd /usr/bin/jim /lib/systemd/system/jimd.service; do
  [ ! -e "$root$gone" ] || bad "$gone is left after purge"
done
# What the whole cycle left in the overlay's upper layer: only the user (passwd, group, shadow,
# gshadow and their backups), dpkg's and adduser's own records, caches and logs.
left=$(cd "$work/upper" && find . ! -type d -printf '%P\n' |
  grep -vE '^etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$' |
  grep -vE '^etc/\.pwd\.lock$' |
  grep -vE '^var/lib/dpkg/' | grep -vE '^var/log/(dpkg\.log|alternatives\.log)$' |
  grep -vE '^var/cache/(debconf|man)/' | grep -vE '^var/lib/man-db/auto-update$' | grep -vE '^var/lib/systemd/deb-systemd-helper-(enabled|masked)/?$' |
  grep -vE '^(tmp|run|proc|dev)/' || true)
[ -z "$left" ] || bad "left behind after purge: $(tr '\n' ' ' <<<"$left")"
[ -z "$(find "$work/upper" -name '*jimd*' ! -path '*/var/lib/dpkg/*' -print -quit)" ] ||
  bad "files named jimd left: $(cd "$work/upper" && find . -name '*jimd*' ! -path './var/lib/dpkg/*' | tr '\n' ' ')"
in_root getent passwd jimd >/dev/null || bad "the jimd user was removed (Debian keeps system users)"

phase "checked"
[ "$fail" = 0 ] && echo "lifecycle OK: install $version, upgrade to $next, remove, purge"
exit "$fail"
