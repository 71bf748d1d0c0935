#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --test
node scripts/run-tests.mjs all "$@"
