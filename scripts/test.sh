#!/usr/bin/env bash
# The project's test command: lint, then the whole test suite (unit, real-weight, app API and browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
python -m pytest -q -p no:cacheprovider "$@"
