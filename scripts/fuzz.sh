#!/usr/bin/env bash
# The long fuzz run: builds, then fuzzes every registered format driver and the CLI parsers.
#   FUZZ_SECONDS=600   how long (default 10 minutes); or FUZZ_CASES=N for a fixed count
#   FUZZ_SEED=N        run seed (default: from the clock; printed, so a run can be repeated)
#   FUZZ_TARGETS=a,b   only these targets (driver names, cli)
#   FUZZ_CRASH_DIR=... where new failures are saved (default test/fuzz/crashers)
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
exec node --enable-source-maps dist/test/fuzz/main.js
