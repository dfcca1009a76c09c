#!/usr/bin/env bash
# Installs, when missing, the Debian packages that building and testing Porter
# need on a fresh machine that has only Rust: a real broker and its clients
# (MQTT tests), pcscd with the virtual reader vsmartcard-vpcd and the PC/SC
# headers (the pcsc driver and its tests), socat (serial tests), faketime (the
# daemon started at a chosen wall-clock time: schedules, daylight saving),
# pkg-config, openssl and Python's `cryptography` package (the portals that
# sign commands in tests/tests/signing.rs; Debian's python3-cryptography is
# PyPI's cryptography, packaged); pip, for the OSDP reader the tests pair
# with (below); gcc and git, which the `osdp` kind's build needs (libosdp-sys
# compiles libosdp's C core with cc and runs `git rev-parse` for a version
# string); chromium and fonts-dejavu-core, the browser and the font of the
# kiosk's browser test (tests/tests/kiosk.rs, its screenshots in docs/kiosk).
set -euo pipefail

PACKAGES=(ca-certificates pkg-config mosquitto mosquitto-clients libpcsclite-dev pcscd vsmartcard-vpcd socat faketime openssl python3 python3-cryptography python3-pip gcc git chromium fonts-dejavu-core)

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

# The OSDP reader the tests pair with (tests/peers/osdp_reader.py): PyPI's
# `libosdp`, pinned (its dict-based API; later releases moved to typed
# classes), installed into target/pydeps rather than the system's Python
# (Debian's is "externally managed", PEP 668). Wheels exist for x86_64 and
# aarch64, CPython 3.11 to 3.13.
PYDEPS="$(cd "$(dirname "$0")/.." && pwd)/target/pydeps"
if [ ! -d "$PYDEPS/libosdp-3.2.9.dist-info" ]; then
  echo "installing: libosdp==3.2.9 (PyPI) into $PYDEPS"
  python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" libosdp==3.2.9
fi
# The Modbus RTU relay board the example test drives (tests/peers/modbus_relay.py):
# PyPI's `pymodbus` serial server, pinned, with pyserial (pure Python).
if [ ! -d "$PYDEPS/pymodbus-3.16.1.dist-info" ]; then
  echo "installing: pymodbus[serial]==3.16.1 (PyPI) into $PYDEPS"
  python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" "pymodbus[serial]==3.16.1"
fi

# Home Assistant's own MQTT discovery code, which tests/peers/ha_discovery.py
# runs on Porter's discovery configs (tests/tests/home_assistant.rs): PyPI's
# `homeassistant` 2024.3.3, the last release for Python 3.11 (Debian 12's),
# into its own target/pydeps-ha (its pins, e.g. cryptography 42, must not
# shadow the other peers'). Not with its full dependency tree (measured: 5.5
# min, 397 MB, Bluetooth, cloud and AWS clients among it), but --no-deps
# with, pinned, only what importing its MQTT integration's schemas and its
# template engine needs (measured: 1 min, 312 MB, nearly all of it
# homeassistant's own wheel).
PYDEPS_HA="$(cd "$(dirname "$0")/.." && pwd)/target/pydeps-ha"
HA_PINS=(homeassistant==2024.3.3 aiohttp==3.9.3 aiohttp-fast-url-dispatcher==0.3.0 aiohttp-zlib-ng==0.3.1
  aiosignal==1.4.0 async-interrupt==1.1.1 atomicwrites-homeassistant==1.4.1 attrs==23.2.0 awesomeversion==24.2.0
  bcrypt==4.1.2 certifi==2026.10.19.post1 cffi==2.1.1 ciso8601==2.3.1 cryptography==42.0.5 frozenlist==1.8.0
  idna==3.20 ifaddr==0.2.0 Jinja2==3.1.3 lru-dict==1.3.0 MarkupSafe==3.0.4 multidict==6.9.1 orjson==3.9.15
  packaging==26.4 pycparser==3.12 PyJWT==2.8.0 python-slugify==8.0.4 PyYAML==6.0.1 text-unidecode==1.3
  typing_extensions==4.16.0 ulid-transform==0.9.0 voluptuous==0.13.1 voluptuous-serialize==2.6.0 yarl==1.9.4
  zlib-ng==1.1.0)
if [ ! -d "$PYDEPS_HA/homeassistant-2024.3.3.dist-info" ]; then
  echo "installing: homeassistant==2024.3.3 (PyPI, --no-deps, ${#HA_PINS[@]} pins) into $PYDEPS_HA"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$PYDEPS_HA" "${HA_PINS[@]}"
fi

# The AsyncAPI CLI that tests/tests/asyncapi.rs runs on docs/asyncapi.yaml
# (npm's @asyncapi/cli, pinned with its whole tree in tests/asyncapi/
# package-lock.json; 4.1.1, the last release that runs on Debian 12's Node
# 18: 5.x and later want Node 24), installed with `npm ci` under
# target/asyncapi, never globally. Node and npm come from Debian's nodejs and
# npm packages unless the machine already has both.
ASYNCAPI="$(cd "$(dirname "$0")/.." && pwd)/target/asyncapi"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing: nodejs npm"
  if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "cannot install nodejs npm: run as root or install them yourself" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
LOCK="$(cd "$(dirname "$0")/.." && pwd)/tests/asyncapi/package-lock.json"
if ! cmp -s "$LOCK" "$ASYNCAPI/package-lock.json" || [ ! -x "$ASYNCAPI/node_modules/.bin/asyncapi" ]; then
  echo "installing: @asyncapi/cli (npm, tests/asyncapi/package-lock.json) into $ASYNCAPI"
  mkdir -p "$ASYNCAPI"
  cp "$(dirname "$LOCK")/package.json" "$LOCK" "$ASYNCAPI/"
  # --ignore-scripts: no package runs code at install (a telemetry postinstall,
  # a browser download); the CLI needs none of them.
  (cd "$ASYNCAPI" && SCARF_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error --ignore-scripts)
fi

# What the kiosk's browser test drives Debian's Chromium with
# (tests/tests/kiosk.rs, tests/kiosk/browser.mjs): npm's playwright-core
# (never a browser of its own: the test launches /usr/bin/chromium; 1.65.1,
# checked with Chromium 156: launch, goto, screenshot) and pixelmatch and pngjs
# for the screenshot comparison, pinned in tests/kiosk/package-lock.json,
# installed with `npm ci` under target/kiosk. playwright-core needs Node 20.
KIOSK="$(cd "$(dirname "$0")/.." && pwd)/target/kiosk"
KLOCK="$(cd "$(dirname "$0")/.." && pwd)/tests/kiosk/package-lock.json"
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "the kiosk's browser test needs Node.js 20 or later (playwright-core 1.65); this machine has $(node --version): install a newer nodejs" >&2
  exit 1
fi
if ! cmp -s "$KLOCK" "$KIOSK/package-lock.json" || [ ! -d "$KIOSK/node_modules/playwright-core" ]; then
  echo "installing: playwright-core, pixelmatch, pngjs (npm, tests/kiosk/package-lock.json) into $KIOSK"
  mkdir -p "$KIOSK"
  cp "$(dirname "$KLOCK")/package.json" "$KLOCK" "$KIOSK/"
  # --ignore-scripts: no install script runs (none is needed; none downloads a browser).
  (cd "$KIOSK" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts)
fi
