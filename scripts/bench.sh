#!/usr/bin/env bash
# `npm run bench`: set-up as for the tests, then the side-by-side benchmark (bench/run.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --test
node dist/bench/run.js "$@"
