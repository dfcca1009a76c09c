#!/usr/bin/env bash
# Runs the amd64 package under a real systemd: a minimal Debian 12 root file
# system (debootstrap, cached in target/systemd-rootfs) booted with
# systemd-nspawn, systemd as PID 1, the package installed into it. A check
# unit inside asserts what only systemd can show, writes its findings and
# powers the container off:
# - the service is enabled at install and active after boot (Type=notify:
#   active only after READY=1), with its status text;
# - under the unit's sandbox (seccomp, devices, read-only system) porterd
#   reads the clock's sync state (adjtimex allowed), opens its admin socket
#   and answers porterctl, and makes its identity key (porter, 0600);
# - its log reaches the journal with fields (DEVICE=, SYSLOG_IDENTIFIER=porterd);
# - a stopped (SIGSTOP) daemon is killed by the watchdog and restarted;
# - installing the package again (an upgrade) restarts the service;
# - systemctl stop drives the lock locked before the daemon exits.
# Usage: scripts/systemd-test.sh [path/to/porter_*_amd64.deb]  (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "systemd-test: FAILED: $*" >&2; exit 1; }
step() { echo "systemd-test: $*"; }
[ "$(id -u)" = 0 ] || fail "run as root"
DEB=${1:-$(ls -1t target/packages/porter_*_amd64.deb 2>/dev/null | head -n 1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || fail "no package: run scripts/package.sh amd64 first"

export DEBIAN_FRONTEND=noninteractive
need=()
for p in debootstrap systemd-container; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq; apt-get install -y -qq --no-install-recommends "${need[@]}"; fi

BASE=target/systemd-rootfs
if [ ! -f "$BASE/.complete" ]; then
  rm -rf "$BASE"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libpcsclite1,udev bookworm "$BASE" \
    http://deb.debian.org/debian >/dev/null
  touch "$BASE/.complete"
fi
R=$(mktemp -d /var/tmp/porter-systemd-XXXX)
trap 'rm -rf "$R"' EXIT
cp -a "$BASE/." "$R/"
cp "$DEB" "$R/root/porter.deb"
chroot "$R" dpkg -i /root/porter.deb >/dev/null || fail "dpkg -i in the root file system"
chroot "$R" systemctl is-enabled porterd.service >/dev/null || fail "porterd.service is not enabled at install"
step "installed $(basename "$DEB") into a Debian 12 root; porterd.service enabled"

cat >"$R/usr/local/bin/porter-check" <<'CHECK'
#!/bin/sh
# Runs inside the container, under systemd; writes /root/result.txt.
out=/root/result.txt
say() { echo "$*" >>"$out"; }
wait_active() {
  for i in $(seq 1 100); do
    [ "$(systemctl is-active porterd)" = active ] && return 0
    sleep 0.2
  done
  return 1
}
wait_active && say "active" || say "not-active $(systemctl is-active porterd)"
say "show $(systemctl show porterd -p Type -p StatusText -p WatchdogUSec | tr '\n' ' ')"
porterctl --socket /run/porter/admin.sock state.get >/dev/null 2>&1 && say "porterctl-ok" || say "porterctl-failed"
# The identity key, made by the sandboxed unit in /var/lib/porter (its one writable folder).
[ "$(stat -c %U:%a /var/lib/porter/identity.pem 2>/dev/null)" = "porter:600" ] &&
  porterctl --socket /run/porter/admin.sock identity 2>/dev/null | grep -q '"algorithm": "ed25519"' &&
  say "identity-ok" || say "identity-failed $(stat -c %U:%a /var/lib/porter/identity.pem 2>&1)"
journalctl -u porterd -o verbose --no-pager >/root/journal.txt 2>&1
grep -q "SYSLOG_IDENTIFIER=porterd" /root/journal.txt && say "journal-identifier"
grep -q "DEVICE=lock" /root/journal.txt && say "journal-device-field"
grep -q "SYNC_STATE=unknown" /root/journal.txt && say "sync-state-unknown"
grep -q "SYNC_STATE=unsynchronized" /root/journal.txt && say "sync-state-read"
# The same outside the unit's sandbox, for comparison.
(cd /tmp && timeout 3 porterd --demo </dev/null 2>&1 | grep -o 'sync_state="[a-z]*"' | head -n 1 | sed 's/^/outside-unit /' >>"$out") || true
# The watchdog: a frozen daemon is killed and started again.
pid=$(systemctl show porterd -p MainPID --value)
kill -STOP "$pid"
for i in $(seq 1 150); do
  new=$(systemctl show porterd -p MainPID --value)
  if [ "$new" != "$pid" ] && [ "$new" != 0 ] && [ "$(systemctl is-active porterd)" = active ]; then break; fi
  sleep 0.2
done
say "restarts $(systemctl show porterd -p NRestarts --value) pid-changed $([ "$new" != "$pid" ] && echo yes || echo no)"
wait_active
# An upgrade (the package installed again over itself) restarts the service.
pid=$(systemctl show porterd -p MainPID --value)
dpkg -i /root/porter.deb >/root/dpkg.txt 2>&1 || say "dpkg-failed $(tail -n 3 /root/dpkg.txt | tr "\n" " ")"
wait_active
after=$(systemctl show porterd -p MainPID --value)
[ "$after" != "$pid" ] && [ -d /var/lib/porter/store ] && say "upgrade-restarted"
systemctl stop porterd
journalctl -u porterd -o cat --no-pager >/root/log.txt 2>&1
awk '/shutting down/{s=1} s && /lock locked/{l=1} l && /stopped/{print "locked-before-stop"; exit}' /root/log.txt >>"$out"
say "done"
systemctl poweroff
CHECK
chmod 755 "$R/usr/local/bin/porter-check"
cat >"$R/etc/systemd/system/porter-check.service" <<'UNIT'
[Unit]
Description=Porter's checks under systemd
After=porterd.service multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/porter-check
[Install]
WantedBy=multi-user.target
UNIT
chroot "$R" systemctl enable porter-check.service >/dev/null 2>&1

timeout 240 systemd-nspawn -q -D "$R" -b --register=no --keep-unit --capability=CAP_SYS_TIME >"$R.boot.log" 2>&1 || true
res="$R/root/result.txt"
[ -f "$res" ] || { tail -n 40 "$R.boot.log"; fail "the checks did not run"; }
cat "$res" | sed 's/^/systemd-test:   /'
grep -qx "active" "$res" || fail "porterd did not become active under systemd (READY=1)"
grep -q "StatusText=deciding access" "$res" || fail "no STATUS= from porterd"
grep -qx "porterctl-ok" "$res" || fail "porterctl could not reach porterd under the unit's sandbox"
grep -qx "identity-ok" "$res" || fail "the unit did not make the identity key (porter:600) or porterctl identity failed"
grep -qx "journal-identifier" "$res" || fail "porterd's log is not in the journal"
grep -qx "journal-device-field" "$res" || fail "the journal lacks porterd's fields (DEVICE=)"
grep -qx "sync-state-read" "$res" || fail "porterd could not read the clock's sync state under the unit (adjtimex)"
grep -q "pid-changed yes" "$res" || fail "the watchdog did not restart a frozen porterd"
grep -qx "upgrade-restarted" "$res" || fail "installing the package again did not restart porterd"
grep -qx "locked-before-stop" "$res" || fail "systemctl stop did not drive the lock locked before porterd stopped"
rm -f "$R.boot.log"
step "all checks under systemd passed"
