#!/usr/bin/env bash
# Installs everything Botify Lab needs into ./.venv (and redis-server, nginx and Chromium from
# Debian when missing), so that a fresh machine can run the demo and the tests. Safe to run again.
#
# Python packages come from requirements.lock only: exact versions, each file checked against
# its sha256, no resolver (regenerate the lock with ./scripts/lock.sh). The project itself is
# then installed in editable mode without dependencies and without build isolation: its build
# backend, setuptools, is in the lock too, so nothing unpinned or unhashed is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "setup: installing redis-server (Debian package)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
# nginx for `server.front: nginx` (botify/front.py). Installing Debian's package starts its default
# site on port 80: that one is stopped again, since botify starts its own nginx per service.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "setup: installing nginx (Debian package)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
    ($SUDO service nginx stop || $SUDO /usr/sbin/nginx -s stop || true) >/dev/null 2>&1
fi
# The dashboard's browser tests drive Debian's headless Chromium (never a browser download).
if [ ! -x /usr/bin/chromium ] || ! command -v chromedriver >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver (Debian packages)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

LOCK=requirements.lock
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
# The stamp skips pip when neither the lock nor pyproject.toml has changed since the last install.
stamp=.venv/.installed-$(cat "$LOCK" pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages from $LOCK (torch is the CPU build, pinned)"
    pip_log=$(mktemp)
    pip=(.venv/bin/python -m pip --disable-pip-version-check)
    # Packages installed earlier that the lock no longer lists (pip, setuptools and wheel stay).
    stale() {
        .venv/bin/python - "$LOCK" <<'EOF'
import importlib.metadata, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
with open(sys.argv[1]) as lock:
    locked = {norm(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock.read(), re.M)}
installed = {norm(d.metadata["Name"]) for d in importlib.metadata.distributions()}
print(" ".join(sorted(installed - locked - {"pip", "setuptools", "wheel", "botify-lab"})))
EOF
    }
    if ! {
        "${pip[@]}" install -q --require-hashes --no-deps -r "$LOCK" &&
        "${pip[@]}" install -q --no-deps --no-build-isolation -e . &&
        extra=$(stale) && { [ -z "$extra" ] || "${pip[@]}" uninstall -q -y $extra; }
    } >"$pip_log" 2>&1; then
        cat "$pip_log" >&2
        echo "setup: pip install failed (output above)" >&2
        exit 1
    fi
    rm -f "$pip_log"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
echo "setup: ready (.venv)"
