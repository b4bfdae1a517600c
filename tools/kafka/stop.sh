#!/usr/bin/env bash
# stop.sh DIR - stops the Kafka node that start.sh started with its state in
# DIR (the folder holding kafka.pid). SIGTERM first, so the broker closes its
# logs cleanly; SIGKILL after 30 s. Succeeds when nothing runs.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
pidfile=$1/kafka.pid
if [ ! -f "$pidfile" ]; then
    echo "stop.sh: no $pidfile; nothing to stop"
    exit 0
fi
pid=$(cat "$pidfile")
# Only signal the process if it still is the Kafka node started from this
# folder: a stale pid file must not take down an unrelated process that
# reused the pid.
if ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
    echo "stop.sh: Kafka (pid $pid) is not running"
    rm -f "$pidfile"
    exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 60); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        echo "stop.sh: Kafka (pid $pid) stopped"
        exit 0
    fi
    sleep 0.5
done
echo "stop.sh: Kafka (pid $pid) ignored SIGTERM for 30 s; killing it" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pidfile"
