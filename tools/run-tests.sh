#!/usr/bin/env bash
# Runs the test suites. Modes:
#   all         unit + integration, then the same under ASan+UBSan, then the
#               end-to-end and topic-administration suites against a real
#               Apache Kafka 3.9 (KRaft) broker
#   asan        unit + integration under ASan+UBSan only
#   real-kafka  the end-to-end and topic-administration suites against
#               Apache Kafka 3.9 only
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
BUILD="${BUILD:-build}"
ASAN_BUILD="${ASAN_BUILD:-build-asan}"
JOBS="${JOBS:-2}"
status=0

run_ctest() {
  local dir="$1" label="$2"
  # Integration tests spend most of their time waiting on brokers, servers
  # and timers (two side by side kept the 2-core CI machine at a load of
  # about 0.7), so several run at once; each has its own ports, data
  # directories and Kafka cluster. The sanitizer build needs more CPU per
  # test, so it runs one fewer.
  local parallel=1
  if [ "$label" = integration ]; then
    parallel="${CRM_TEST_PARALLEL:-4}"
    [ "$dir" = "$ASAN_BUILD" ] && parallel="${CRM_TEST_PARALLEL_ASAN:-3}"
  fi
  # Under the sanitizers the whole-fleet suites (e2e, e2e_receipts, chaos)
  # are left out: they run the same service binaries that every service's
  # own integration suite runs under ASan+UBSan just before, and they would
  # add about six minutes to a CI run that must stay under twenty.
  local exclude=()
  [ "$dir" = "$ASAN_BUILD" ] && [ "$label" = integration ] && exclude=(-E "${CRM_ASAN_EXCLUDE:-test_e2e|test_chaos}")
  echo "== ctest $label in $dir"
  if ! ctest --test-dir "$dir" -L "$label" -j "$parallel" "${exclude[@]}" --output-on-failure --timeout 900; then
    status=1
  fi
}

suite_normal() {
  run_ctest "$BUILD" unit
  run_ctest "$BUILD" integration
}

suite_asan() {
  cmake -S . -B "$ASAN_BUILD" -G Ninja -DCRM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$ASAN_BUILD" -j "$JOBS"
  # Leak checking stays on; librdkafka and libmicrohttpd threads end before exit.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  run_ctest "$ASAN_BUILD" unit
  run_ctest "$ASAN_BUILD" integration
  unset ASAN_OPTIONS UBSAN_OPTIONS
}

suite_real_kafka() {
  CRM_WITH_KAFKA_DEPS=1 tools/install-deps.sh
  local kdir="${CRM_KAFKA_HOME:-var/kafka-3.9}"
  tools/kafka/fetch.sh "$kdir"
  local rundir port
  rundir="$(mktemp -d "${TMPDIR:-/tmp}/crm-kafka-XXXXXX")"
  port="${CRM_REAL_KAFKA_PORT:-19092}"
  if ! tools/kafka/start.sh "$kdir" "$rundir" "$port"; then
    echo "real-kafka: Apache Kafka did not start"; status=1; return
  fi
  echo "== end-to-end suite against Apache Kafka 3.9 at 127.0.0.1:$port"
  if ! CRM_TEST_KAFKA_BROKERS="127.0.0.1:$port" "$BUILD/tests/integration_test_e2e" --jobs 1; then
    status=1
  fi
  # `crmctl topics create` against the real broker: partitions and topic
  # configs read back through the Admin API, a changed config repaired by --fix.
  echo "== topic administration against Apache Kafka 3.9 at 127.0.0.1:$port"
  if ! CRM_TEST_KAFKA_BROKERS="127.0.0.1:$port" "$BUILD/tests/integration_test_topics_real" --jobs 1; then
    status=1
  fi
  tools/kafka/stop.sh "$rundir" || true
  rm -rf "$rundir"
}

case "$mode" in
  all) suite_normal; suite_asan; suite_real_kafka ;;
  asan) suite_asan ;;
  real-kafka) suite_real_kafka ;;
  *) echo "usage: $0 all|asan|real-kafka"; exit 2 ;;
esac

if [ "$status" -ne 0 ]; then
  echo "run-tests: FAILED"
else
  echo "run-tests: all suites passed"
fi
exit "$status"
