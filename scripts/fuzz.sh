#!/usr/bin/env bash
# Fuzzing's CI stage (docs/fuzzing.md): builds every target of fuzz/ and runs
# each in turn for FUZZ_SECONDS (default 15) from its committed seeds in
# fuzz/corpus/<target>/. Fails when any target crashes, panics, times out or
# runs out of memory, naming the input libFuzzer saved. Works on a fresh
# Debian machine that has only Rust: installs the nightly toolchain, a C++
# compiler (libFuzzer is C++) and cargo-fuzz when missing.
#
#   scripts/fuzz.sh                      every target (cargo fuzz list), 15 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh keypad command   those targets, 10 min each
set -euo pipefail
cd "$(dirname "$0")/.."
# 15 s each keeps the 16 targets' running at 4 minutes, as 12 at 20 s did.
seconds=${FUZZ_SECONDS:-15}

if ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "libFuzzer needs a C++ compiler: install g++" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends g++
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
# Pinned so that a new cargo-fuzz cannot change CI's behaviour unseen.
if ! cargo +nightly fuzz --version 2>/dev/null | grep -q ' 0\.13\.'; then
  cargo install cargo-fuzz --version '^0.13' --locked
fi

cd fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
# The default build: optimised, with debug assertions and overflow checks on,
# so an arithmetic overflow is a crash too.
cargo +nightly fuzz build

failed=()
for t in "${targets[@]}"; do
  # New inputs go to a working corpus (ignored by git); the seeds stay as committed.
  mkdir -p "work/$t" "artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  if ! cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"work/$t.log" 2>&1; then
    echo "fuzz: $t FAILED; the panic and the end of fuzz/work/$t.log:" >&2
    grep -A2 -m3 -E 'panicked at|ERROR: libFuzzer' "work/$t.log" >&2 || true
    tail -n 20 "work/$t.log" >&2
    failed+=("$t")
  else
    grep -E '^stat::number_of_executed_units' "work/$t.log" | sed "s/^/fuzz: $t: /" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}; inputs under fuzz/artifacts/ (docs/fuzzing.md: minimise, then a regression test)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
