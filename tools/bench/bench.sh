#!/usr/bin/env bash
# make bench: benchmarks on the embedded default, one JSON line per scenario
# (docs/benchmarks.md). BENCH_SCENARIOS picks them (default e2e,webhook,delay):
#   e2e      BENCH_COUNT (50,000) communications end to end (email channel,
#            local SMTP sink): throughput, latency p50/p99, peak RSS per service;
#   webhook  BENCH_WEBHOOK_COUNT (5,000) signed Twilio status callbacks from
#            BENCH_WEBHOOK_CLIENTS (16) threads, after BENCH_WEBHOOK_SMS (200) SMS;
#   delay    BENCH_DELAY_COUNT (2,000) requests through crm.defer.1m: lateness.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
CRMCTL="$BUILD/tools/crmctl/crmctl"
export BUILD
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
# The webhook scenario signs callbacks with the fleet's made-up Twilio token.
# shellcheck disable=SC1091
. "$CRM_DEV_DIR/secrets.env"
set +a
python3 tools/bench/bench.py "${BENCH_SCENARIOS:-e2e,webhook,delay}" "$CRM_DEV_DIR/pids"
