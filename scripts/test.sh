#!/usr/bin/env bash
# The README's test command: install what the tests need, then run them.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m live`).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e '.[test]'
python -m pytest "$@"
