#!/usr/bin/env bash
# Cross-builds porter-drivers for a 64-bit Raspberry Pi (aarch64-unknown-linux-gnu)
# on a Debian x86_64 machine with rustup, installing what is missing first:
# the Rust target, the aarch64 C toolchain (the linker), and the arm64 PC/SC
# headers and library that the pcsc crate links against.
#
# This is how both GPIO backends (drivers/src/gpio/cdev.rs, the kernel's character
# device; drivers/src/gpio/mod.rs, rppal) are compiled for the
# board it runs on; its logic is tested on x86_64 through the GPIO fake.
#
# Usage: scripts/cross-check.sh [build|check] [extra cargo args]
# - build (default): builds the library and links the GPIO test binary for
#   aarch64, which proves the linker and the arm64 libpcsclite work (an rlib
#   alone links nothing). With qemu-user-static installed, that binary can be
#   run: QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64-static <binary>.
# - check: type-checks every target of porter-drivers for aarch64.
# The output goes to target/cross/ so it does not evict the host build's.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-build}
shift || true
case "$MODE" in
  build|check) ;;
  *) echo "usage: $0 [build|check] [cargo args]" >&2; exit 2 ;;
esac

TARGET=aarch64-unknown-linux-gnu

if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi
need_root() {
  if [ "$SUDO" = none ]; then
    echo "cannot install $*: run as root or install it yourself" >&2
    exit 1
  fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
export DEBIAN_FRONTEND=noninteractive

# 1. The Rust target.
if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi

# 2. The cross C toolchain, used as the linker.
if ! installed gcc-aarch64-linux-gnu; then
  need_root gcc-aarch64-linux-gnu
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi

# 3. libpcsclite for arm64. A separate apt-get call: resolving it together
# with the cross toolchain fails.
if ! installed libpcsclite-dev:arm64; then
  need_root libpcsclite-dev:arm64
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends libpcsclite-dev:arm64
fi

# Set here, not in .cargo/config.toml, so host builds are untouched.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross}

if [ "$MODE" = build ]; then
  cargo build -p porter-drivers --target "$TARGET" --locked --lib --test gpio "$@"
  bin=$(find "$CARGO_TARGET_DIR/$TARGET/debug/deps" -maxdepth 1 -type f -executable -name 'gpio-*' | head -n 1)
  if [ -n "$bin" ] && command -v file >/dev/null; then file "$bin"; fi
  echo "cross-check: porter-drivers built and linked for $TARGET"
else
  cargo check -p porter-drivers --target "$TARGET" --locked --all-targets "$@"
  echo "cross-check: porter-drivers checked for $TARGET"
fi
