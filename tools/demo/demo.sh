#!/usr/bin/env bash
# make demo: start the embedded fleet, send a realistic batch and the scripted
# scenarios (retries, fallback, preferences, receipts, receipt-driven
# fallback, inbound STOP) through the ingest API, show progress, print a
# summary from PostgreSQL, stop the fleet. Exit status 1 when one of the
# demo's expectations fails or a wait times out.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
CRMCTL="$BUILD/tools/crmctl/crmctl"
export CRM_BUILD_DIR="$BUILD"

# The demo runs its own fleet in its own directory (var/demo) on its own ports
# (18180 and up), so it never stops or pollutes a fleet started with
# `make dev-up` in var/dev on 18080. The directory is recreated on every run,
# so each run starts from nothing, like the embedded Kafka does: no
# preferences, claims, mail or consumer offsets of an earlier run. For the
# same reason the demo never uses an outside Kafka or PostgreSQL.
export CRM_DEV_DIR="${CRM_DEMO_DIR:-$PWD/var/demo}"
export CRM_DEV_PORT_BASE="${CRM_DEMO_PORT_BASE:-18180}"
unset KAFKA_BROKERS DATABASE_URL

# Settings for the demo's fleet. `crmctl dev up` starts every service with its
# own environment plus the fleet's endpoints, so these reach the workers and
# the router. Short retry windows and receipt deadlines let the retry and
# receipt scenarios finish in seconds instead of minutes; each can be
# overridden from the caller's environment.
export RETRY_BASE_MS="${RETRY_BASE_MS:-200}"
export RETRY_MAX_ATTEMPTS="${RETRY_MAX_ATTEMPTS:-4}"
# Receipt-driven fallback, when this build has it: the services' receipt
# settings are read from their configuration tables (`--help`), and the
# critical deadline and the check interval (in ms) are shortened.
CRM_DEMO_RECEIPT_SETTINGS="$(for s in router sms-worker whatsapp-worker; do
    "$BUILD/services/$s/crm-$s" --help 2>/dev/null || true
done | grep -oE '\b([A-Z][A-Z0-9_]*_)?RECEIPT_[A-Z0-9_]+\b' | sort -u | tr '\n' ' ' || true)"
for v in $CRM_DEMO_RECEIPT_SETTINGS; do
    case "$v" in
    *CRITICAL*_MS) export "$v=${!v:-4000}" ;;
    *INTERVAL*_MS) export "$v=${!v:-1000}" ;;
    esac
done
export CRM_DEMO_RECEIPT_SETTINGS

"$CRMCTL" dev down >/dev/null 2>&1 || true
if [ -e "$CRM_DEV_DIR" ]; then
    # Only a directory a fleet made (or an empty one) is removed: a mistyped
    # CRM_DEMO_DIR must never delete anything else.
    if [ -e "$CRM_DEV_DIR/pids" ] || [ -e "$CRM_DEV_DIR/env" ] || [ -d "$CRM_DEV_DIR/pg" ] ||
        [ -d "$CRM_DEV_DIR/log" ] || [ -z "$(ls -A "$CRM_DEV_DIR")" ]; then
        rm -rf -- "$CRM_DEV_DIR"
    else
        echo "demo: $CRM_DEV_DIR exists and is not a fleet directory; set CRM_DEMO_DIR to another path" >&2
        exit 2
    fi
fi
# The key of the address hashes (client_contacts, conversations). `dev up`
# makes one per directory and gives it to the webhook receiver and the
# WhatsApp worker; it does not pass it to the router and the projector, which
# then record no client_contacts, and an inbound STOP finds no client. Made
# here and exported, it reaches them too (every service inherits this
# environment), and `dev up` reads the same file for the others.
mkdir -p "$CRM_DEV_DIR"
CRM_DATA_KEY="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
(umask 077 && printf '%s' "$CRM_DATA_KEY" >"$CRM_DEV_DIR/data.key")
export CRM_DATA_KEY

trap '"$CRMCTL" dev down >/dev/null 2>&1 || true' EXIT
"$CRMCTL" dev up
set -a
# shellcheck disable=SC1091
. "$CRM_DEV_DIR/env"
set +a
rc=0
python3 tools/demo/demo.py "$@" || rc=$?
echo
echo "Stopping the fleet (crmctl dev down)..."
exit "$rc"
