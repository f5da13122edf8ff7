#!/usr/bin/env bash
# Set up (or reuse) .venv and run the pipeline on config.toml: by default the sample users
# against the embedded mock API, leaving out/results.xlsx. Extra arguments go to `pipeline run`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" run ""
cd "$ROOT"
exec "$VENV/bin/pipeline" run "$@"
