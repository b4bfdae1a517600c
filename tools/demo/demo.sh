#!/usr/bin/env bash
# make demo: start the embedded fleet, send a realistic batch through the
# ingest API, show progress, print a summary from PostgreSQL, stop the fleet.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
CRMCTL="$BUILD/tools/crmctl/crmctl"
export CRM_DEV_DIR="${CRM_DEV_DIR:-$PWD/var/dev}"

"$CRMCTL" dev down >/dev/null 2>&1 || true
trap '"$CRMCTL" dev down >/dev/null 2>&1 || true' EXIT
"$CRMCTL" dev up
set -a
# shellcheck disable=SC1091
. "$CRM_DEV_DIR/env"
set +a
python3 tools/demo/demo.py "$@"
echo
echo "Stopping the fleet (crmctl dev down)..."
