#!/usr/bin/env bash
# make bench: 50,000 communications end to end on the embedded default (email
# channel, local SMTP sink), printing one JSON line with throughput, latency
# p50/p99 and peak RSS per service. BENCH_COUNT overrides the count.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
CRMCTL="$BUILD/tools/crmctl/crmctl"
export CRM_DEV_DIR="${CRM_BENCH_DIR:-$PWD/var/bench}"
export CRM_DEV_PORT_BASE="${CRM_BENCH_PORT_BASE:-28080}"
# The sandbox counts and discards mail instead of writing 50,000 files, so the
# figures measure the engine rather than the sandbox's disk.
export CRM_DEV_SMTP_SINK=1
# Info-level logs per message would measure the terminal; keep warnings.
export LOG_LEVEL="${LOG_LEVEL:-warn}"

"$CRMCTL" dev down >/dev/null 2>&1 || true
rm -rf "$CRM_DEV_DIR/maildir"
trap '"$CRMCTL" dev down >/dev/null 2>&1 || true' EXIT
"$CRMCTL" dev up >/dev/null
set -a
# shellcheck disable=SC1091
. "$CRM_DEV_DIR/env"
set +a
python3 tools/bench/bench.py "${BENCH_COUNT:-50000}" "$CRM_DEV_DIR/pids"
