#!/usr/bin/env bash
# Set up (or reuse) .venv with the dev tools and run the checks and the test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev "[dev]"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" pipeline
exec "$VENV/bin/pytest" "$@"
