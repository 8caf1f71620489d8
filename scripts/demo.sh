#!/usr/bin/env bash
# Sets everything up (./scripts/setup.sh) and runs the whole loop on the default world:
# world -> botify -> day 1 -> training -> day 2 -> A/B reports. Options go to scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
