#!/usr/bin/env bash
# Builds Porter's Debian packages and tests them as an installer would use
# them, on this machine (as root, which CI is): installs the amd64 package,
# checks its files (porter-kiosk and its browser script among them), the
# porter user, the unit (systemd-analyze verify, and the hardening score
# printed), starts porterd from the installed configs and porter-kiosk as
# the porter user, reinstalls it over its own state (an upgrade keeps
# /var/lib/porter), purges it; then runs the arm64 package's porterd
# --version under qemu-user.
#
# Usage: scripts/package-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
step() { echo "package-test: $*"; }

if [ "$(id -u)" != 0 ]; then fail "run as root: it installs and purges the package"; fi
export DEBIAN_FRONTEND=noninteractive
need=()
for p in systemd qemu-user libpcsclite1 file openssl python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

scripts/package.sh all
AMD64=$(ls -1t target/packages/porter_*_amd64.deb | head -n 1)
ARM64=$(ls -1t target/packages/porter_*_arm64.deb | head -n 1)
step "built $AMD64 and $ARM64"

# ---- install ----
dpkg --purge porter >/dev/null 2>&1 || true
apt-get install -y -qq "./$AMD64" >/dev/null
step "installed $(dpkg-query -W -f='${Package} ${Version} ${Architecture}' porter)"

for f in /usr/bin/porterd /usr/bin/porterctl /usr/bin/porter-kiosk /usr/lib/porter/porter-kiosk-browser \
  /lib/systemd/system/porterd.service \
  /usr/lib/sysusers.d/porter.conf /usr/lib/tmpfiles.d/porter.conf /lib/udev/rules.d/60-porter.rules \
  /usr/share/polkit-1/rules.d/50-porter-pcscd.rules /etc/porter/porter.toml \
  /usr/share/doc/porter/examples/raspberry-pi.toml /usr/share/doc/porter/examples/usb.toml \
  /usr/share/doc/porter/examples/larger-room.toml /usr/share/doc/porter/examples/kiosk.toml \
  /usr/share/doc/porter/kiosk.md \
  /usr/share/doc/porter/examples/demo.toml /usr/share/doc/porter/install.md; do
  [ -e "$f" ] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' porter | grep -q "/etc/porter/porter.toml" || fail "porter.toml is not a conffile"
getent passwd porter >/dev/null || fail "no porter user"
getent group porter >/dev/null || fail "no porter group"
[ "$(stat -c %U:%a /var/lib/porter)" = "porter:750" ] || fail "/var/lib/porter is $(stat -c %U:%a /var/lib/porter)"
for f in /usr/bin/porter-kiosk /usr/lib/porter/porter-kiosk-browser; do
  [ -x "$f" ] || fail "$f is not executable"
done
sh -n /usr/lib/porter/porter-kiosk-browser || fail "porter-kiosk-browser is not a valid sh script"
dpkg-deb -f "$AMD64" Suggests | grep -q chromium || fail "the package does not suggest chromium"
step "files, conffile, the porter user and its folders: ok"

systemd-analyze verify /lib/systemd/system/porterd.service || fail "systemd-analyze verify"
step "systemd-analyze verify: ok"
score=$(systemd-analyze security --offline=yes /lib/systemd/system/porterd.service 2>&1 | tail -n 1)
step "hardening: $score"
case "$score" in *" OK "*|*"SAFE"*) ;; *) fail "the unit's exposure is not OK or better: $score" ;; esac

/usr/bin/porterd --version
/usr/bin/porterd check-config --config /etc/porter/porter.toml || fail "the installed config does not check"
for c in /usr/share/doc/porter/examples/*.toml; do
  /usr/bin/porterd check-config --config "$c" >/dev/null || fail "$c does not check"
done
step "check-config of the installed and example configs: ok"

# Starts porterd as porter with config $1 (from folder $2), its log in $3,
# and waits until it is ready; its pid is then in $PID.
run_as_porter() {
  local cfg=$1 dir=$2 log=$3
  ( cd "$dir" && exec setpriv --reuid=porter --regid=porter --init-groups /usr/bin/porterd --config "$cfg" ) \
    </dev/null >"$log" 2>&1 &
  PID=$!
  local pid=$PID
  for _ in $(seq 1 100); do
    grep -q "porterd ready" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "porterd ($cfg) exited before it was ready"; }
    sleep 0.1
  done
  grep -q "porterd ready" "$log" || { cat "$log"; fail "porterd ($cfg) not ready within 10 s"; }
}

# The installed default config, as the service runs it.
log=$(mktemp)
run_as_porter /etc/porter/porter.toml /var/lib/porter "$log"; pid=$PID
out=$(/usr/bin/porterctl --socket /run/porter/admin.sock state.get) || fail "porterctl state.get: $out"
step "porterd runs from /etc/porter/porter.toml as porter; porterctl: $out"
ident=$(/usr/bin/porterctl --socket /run/porter/admin.sock identity) || fail "porterctl identity: $ident"
echo "$ident" | grep -q '"algorithm": "ed25519"' || fail "porterctl identity: $ident"
kill -TERM "$pid"; wait "$pid" || fail "porterd did not stop cleanly"
[ -f /var/lib/porter/device.key ] || fail "no device secret in /var/lib/porter"
[ "$(stat -c %U:%a /var/lib/porter/device.key)" = "porter:600" ] || fail "the device secret is $(stat -c %U:%a /var/lib/porter/device.key)"
[ "$(stat -c %U:%a /var/lib/porter/identity.pem)" = "porter:600" ] || fail "the identity key is $(stat -c %U:%a /var/lib/porter/identity.pem 2>&1)"
# openssl reads the key the daemon made, and finds the public key porterctl showed.
raw=$(openssl pkey -in /var/lib/porter/identity.pem -pubout -outform DER | tail -c 32 | base64)
echo "$ident" | grep -q "\"public_key\": \"$raw\"" || fail "porterctl identity does not show the key in identity.pem ($raw)"
step "the identity key: porter:600, read by openssl, shown by porterctl identity: ok"

# The installed demo config, from a folder of porter's.
demo=$(mktemp -d); chown porter:porter "$demo"
run_as_porter /usr/share/doc/porter/examples/demo.toml "$demo" "$log"; pid=$PID
grep -q "lock locked" "$log" || fail "the demo's lock was not driven locked"
kill -TERM "$pid"; wait "$pid" || fail "the demo did not stop cleanly"
step "porterd runs from the installed demo config as porter: ok"

# The kiosk, as porterd starts it (an exec device): it serves its page on
# loopback and says so on its standard error.
klog=$(mktemp)
setpriv --reuid=porter --regid=porter --init-groups /usr/bin/porter-kiosk --device kiosk --door main \
  --listen 127.0.0.1:0 </dev/null >/dev/null 2>"$klog" &
kpid=$!
for _ in $(seq 1 100); do grep -q "porter-kiosk: serving http://127.0.0.1:" "$klog" && break; sleep 0.1; done
url=$(sed -n 's/^porter-kiosk: serving //p' "$klog" | head -n 1)
[ -n "$url" ] || { cat "$klog"; fail "porter-kiosk did not say where it serves"; }
[ "$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "${url}healthz")" = ok ] \
  || fail "porter-kiosk's ${url}healthz does not answer ok"
kill -TERM "$kpid"; wait "$kpid" || true
rm -f "$klog"
step "porter-kiosk serves $url as porter: ok"
rm -rf "$demo"

# ---- upgrade: the same binaries packaged as the next revision ----
echo "# an installer's edit" >>/etc/porter/porter.toml
key_before=$(sha256sum /var/lib/porter/device.key)
identity_before=$(sha256sum /var/lib/porter/identity.pem)
up=$(mktemp -d)
cargo deb -p porterd --locked --no-build --deb-revision 99 --output "$up/" >/dev/null
apt-get install -y -qq "$(ls "$up"/porter_*_amd64.deb)" >/dev/null
[ "$(dpkg-query -W -f='${Version}' porter)" = "$(dpkg-deb -f "$(ls "$up"/porter_*_amd64.deb)" Version)" ] || fail "not upgraded"
[ "$(sha256sum /var/lib/porter/device.key)" = "$key_before" ] || fail "the upgrade lost or replaced the device secret"
[ "$(sha256sum /var/lib/porter/identity.pem)" = "$identity_before" ] || fail "the upgrade lost or replaced the identity key"
[ -d /var/lib/porter/store ] || fail "the upgrade lost the store"
grep -q "an installer's edit" /etc/porter/porter.toml || fail "the upgrade replaced the edited conffile"
run_as_porter /etc/porter/porter.toml /var/lib/porter "$log"; pid=$PID
kill -TERM "$pid"; wait "$pid" || fail "porterd did not stop cleanly after the upgrade"
rm -rf "$up"
step "upgrade to $(dpkg-query -W -f='${Version}' porter) keeps /var/lib/porter and the edited config, and runs: ok"

# ---- purge ----
dpkg --purge porter >/dev/null
[ ! -e /var/lib/porter ] || fail "purge left /var/lib/porter"
[ ! -e /etc/porter/porter.toml ] || fail "purge left /etc/porter/porter.toml"
[ ! -e /usr/bin/porterd ] || fail "purge left /usr/bin/porterd"
step "purge removes the binaries, the config and the state: ok"

# ---- arm64 under qemu-user ----
x=$(mktemp -d)
dpkg-deb -x "$ARM64" "$x"
file "$x/usr/bin/porterd" | grep -q "ARM aarch64" || fail "the arm64 package's porterd is $(file -b "$x/usr/bin/porterd")"
v=$(qemu-aarch64 -L / "$x/usr/bin/porterd" --version) || fail "porterd --version under qemu-aarch64"
step "arm64: $v (under qemu-aarch64)"
file "$x/usr/bin/porter-kiosk" | grep -q "ARM aarch64" || fail "the arm64 package's porter-kiosk is $(file -b "$x/usr/bin/porter-kiosk")"
step "arm64: porter-kiosk is an aarch64 binary"
rm -rf "$x" "$log"
step "all package checks passed"
