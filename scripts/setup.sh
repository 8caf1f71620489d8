#!/usr/bin/env bash
# Installs everything Botify Lab needs into ./.venv (and redis-server and Chromium from Debian
# when missing), so that a fresh machine can run the demo and the tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "setup: installing redis-server (Debian package)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# The dashboard's browser tests drive Debian's headless Chromium (never a browser download).
if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (Debian packages)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
# The stamp skips pip when pyproject.toml has not changed since the last install.
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages (torch is the CPU build, pinned)"
    pip_log=$(mktemp)
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e ".[ml,dev]"; } >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        echo "setup: pip install failed (output above)" >&2
        exit 1
    fi
    rm -f "$pip_log"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
echo "setup: ready (.venv)"
