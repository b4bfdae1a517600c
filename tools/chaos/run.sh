#!/usr/bin/env bash
# `make chaos`: the long chaos suite (docs/chaos.md). Runs the chaos test
# binary with CRM_CHAOS_LONG=1 (more requests, longer load, repeated kills
# and outages), collects each scenario's figures and prints them as a table:
# requests accepted, terminal states by status, lost (must be 0), provider
# duplicates against the messages in flight at the kills, wall time.
# Exits non-zero when any scenario fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${BUILD:-build}"
bin="$BUILD/tests/integration_test_chaos"
if [ ! -x "$bin" ]; then
  echo "chaos: $bin is not built (make build first)" >&2
  exit 2
fi
figures="$(pwd)/$BUILD/chaos-figures.jsonl"
rm -f "$figures"
started=$(date +%s)
status=0
CRM_CHAOS_LONG=1 CRM_CHAOS_FIGURES="$figures" "$bin" --jobs 1 || status=1
ended=$(date +%s)

/usr/bin/python3 - "$figures" "$((ended - started))" <<'PY'
import json, sys
path, total = sys.argv[1], int(sys.argv[2])
try:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
except FileNotFoundError:
    rows = []
print()
print("chaos figures (long run)")
head = (f"{'scenario':<10} {'accepted':>8} {'terminal':>8} {'lost':>5} {'dups':>5} {'in flight':>9} "
        f"{'timeouts':>8} {'wall s':>7}  terminal states")
print(head)
print("-" * len(head))
for r in rows:
    print(f"{r['scenario']:<10} {r['accepted']:>8} {r['terminal']:>8} {r['lost']:>5} "
          f"{r['provider_duplicates']:>5} {r['in_flight_at_kills']:>9} {r.get('client_timeouts', 0):>8} "
          f"{r['wall_ms'] / 1000:>7.1f}  {r['by_status']}")
print("dups must stay within in flight + timeouts (timed-out attempts); lost must be 0")
for r in rows:
    if r["kills"]:
        kills = ", ".join(f"{k['target']} {k['in_flight']}" for k in r["kills"])
        print(f"  {r['scenario']}: in flight at each kill: {kills}")
print(f"total wall time {total} s")
PY
if [ "$status" -ne 0 ]; then
  echo "chaos: FAILED"
else
  echo "chaos: every scenario passed"
fi
exit "$status"
