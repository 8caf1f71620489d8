#!/usr/bin/env bash
# The mutation check (docs/testing.md): mutmut over the modules that carry the promises, each
# against its own tests, within a time budget per module. Arguments go to scripts/mutation.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/mutmut ]; then
    ./scripts/setup.sh >/dev/null
fi
exec .venv/bin/python scripts/mutation.py "$@"
