#!/usr/bin/env bash
# Regenerates requirements.lock, the exact versions and sha256 hashes that scripts/setup.sh
# installs, from pyproject.toml (the project's dependencies and its ml and dev extras) for
# CPython 3.11 on Linux x86_64.
#
#   ./scripts/lock.sh                        keep the current pins; resolve only what changed in
#                                            pyproject.toml (run it after adding a dependency)
#   ./scripts/lock.sh --upgrade              take the newest releases within pyproject's bounds
#   ./scripts/lock.sh --upgrade-package X    the same for X alone
#
# pip-compile (pip-tools) runs from a throwaway virtual environment with pinned versions, so
# the same inputs give the same file: a second run leaves no diff. It resolves against PyPI and
# /opt/wheels only (pip configuration files and mirrors are ignored), and torch is held to the
# CPU build in /opt/wheels: PyPI's torch of the same version is a CUDA build that pulls several
# GB of nvidia-* packages.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=requirements.lock
TORCH="torch==2.13.0+cpu"
WHEELS=/opt/wheels
TOOLS=(pip==26.3 pip-tools==7.6.2 build==1.6.1 click==8.5.1 packaging==26.4 pyproject_hooks==1.3.3 wheel==0.48.0)

die() { echo "lock: $*" >&2; exit 1; }
for arg in "$@"; do
    case "$arg" in
        --upgrade|-U|--upgrade-package=*|-P|--upgrade-package) ;;
        -*) die "unknown option $arg (use --upgrade or --upgrade-package NAME)" ;;
    esac
done

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import platform, sys; sys.exit(not (sys.version_info[:2] == (3, 11) and platform.system() == "Linux" and platform.machine() == "x86_64"))' \
    || die "the lock is for CPython 3.11 on Linux x86_64; set PYTHON to such an interpreter"
ls "$WHEELS"/torch-2.13.0+cpu-cp311-*.whl >/dev/null 2>&1 || die "no torch 2.13.0 CPU wheel in $WHEELS"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
if ! "$work/venv/bin/pip" install -q --disable-pip-version-check "${TOOLS[@]}" >"$work/tools.log" 2>&1; then
    cat "$work/tools.log" >&2
    die "could not install pip-tools"
fi

# pip-compile reads the current pins from its output file: work on a copy, so that a failed
# run or a lock that fails the checks below leaves requirements.lock as it was.
if [ -f "$LOCK" ]; then cp "$LOCK" "$work/lock"; fi
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT PIP_NO_INDEX PIP_REQUIRE_HASHES
PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="./scripts/lock.sh" "$work/venv/bin/pip-compile" \
    --quiet --resolver=backtracking \
    --generate-hashes --allow-unsafe --strip-extras --newline=LF \
    --extra ml --extra dev --build-deps-for editable \
    --find-links "$WHEELS" --no-emit-index-url --no-emit-trusted-host \
    --upgrade-package "$TORCH" \
    --output-file "$work/lock" "$@" pyproject.toml

grep -qxF "$TORCH \\" "$work/lock" || die "the new lock does not pin $TORCH; left $LOCK unchanged"
if grep -Eiq '^(nvidia-|triton==|cuda-)' "$work/lock"; then
    die "the new lock pulls CUDA packages; left $LOCK unchanged"
fi
if [ -f "$LOCK" ] && cmp -s "$work/lock" "$LOCK"; then
    echo "lock: $LOCK unchanged ($(grep -c '^[A-Za-z0-9].*==' "$LOCK") packages)"
else
    cp "$work/lock" "$LOCK"
    echo "lock: wrote $LOCK ($(grep -c '^[A-Za-z0-9].*==' "$LOCK") packages)"
fi
