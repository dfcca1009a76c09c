#!/usr/bin/env bash
# Runs Porter's whole test suite on a fresh Debian machine that has only Rust:
# installs the system packages the tests use, then runs every test of the
# workspace. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need, installed when missing: a real broker and
# its command-line clients for the MQTT tests. PC/SC and serial tests add
# theirs here (pcscd, vsmartcard-vpcd, socat, libpcsclite-dev, ...).
PACKAGES=(ca-certificates mosquitto mosquitto-clients)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "cannot install ${missing[*]}: run as root or install them yourself" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo's own last line is the doc-tests').
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
