#!/usr/bin/env bash
# The project's test command: lint, then the whole test suite (unit, real-weight, app API and browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
# Two workers (pytest-xdist), a test file each at a time, one torch thread each (tests/conftest.py): most tests are
# single-threaded Python, so one process left a core idle; two threads per worker on two cores oversubscribe. The
# slowest files go first (tests/conftest.py SLOWEST_FILES), not xdist's default order by number of tests.
python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder "$@"
