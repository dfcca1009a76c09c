#!/usr/bin/env bash
# Builds Porter's Debian packages with cargo-deb: amd64 natively and arm64
# cross-compiled (the aarch64 target, Debian's gcc-aarch64-linux-gnu and
# libpcsclite-dev:arm64 through multiarch, as scripts/cross-check.sh sets up).
# Installs cargo-deb when missing. Both packages are copied to target/packages/
# (cargo-deb clears other versions of the package from its own output folder).
# The package ships porter-kiosk (docs/kiosk.md) too, a crate of its own that
# cargo-deb does not build for porterd: it is built first, for the same target
# and into the same folder.
#
# Usage: scripts/package.sh [amd64|arm64|all]   (default: all)
#   amd64  this machine's package only (an amd64 machine): cargo-deb, nothing else
#   arm64  the Raspberry Pi's: first installs, with apt-get, the cross toolchain
#          (gcc-aarch64-linux-gnu, the Rust target aarch64-unknown-linux-gnu) and
#          libpcsclite-dev:arm64 (dpkg --add-architecture arm64)
#   all    both, and so the cross toolchain too
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
case "$WHICH" in
  amd64 | arm64 | all) ;;
  -h | --help) sed -n '/^# Usage/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "package.sh: unknown package \`$WHICH\`; usage: scripts/package.sh [amd64|arm64|all] (default: all; all and arm64 install a cross toolchain with apt-get)" >&2; exit 2 ;;
esac

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked
fi

if [ "$WHICH" = amd64 ] || [ "$WHICH" = all ]; then
  cargo build --release --locked -p porter-kiosk
  cargo deb -p porterd --locked --output target/debian/amd64/
fi

if [ "$WHICH" = arm64 ] || [ "$WHICH" = all ]; then
  # The toolchain, the target and libpcsclite-dev:arm64, once.
  scripts/cross-check.sh check >/dev/null
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig
  export CARGO_TARGET_DIR=target/cross
  # --no-strip: the host's strip cannot read arm64 binaries (cargo-deb would
  # call it); the release profile strips them already.
  cargo build --release --locked -p porter-kiosk --target aarch64-unknown-linux-gnu
  cargo deb -p porterd --locked --target aarch64-unknown-linux-gnu --no-strip --output target/debian/arm64/
fi
mkdir -p target/packages
for arch in amd64 arm64; do
  if ls target/debian/$arch/*.deb >/dev/null 2>&1; then
    rm -f target/packages/*_$arch.deb
    cp target/debian/$arch/*.deb target/packages/
  fi
done
ls -1 target/packages/*.deb
