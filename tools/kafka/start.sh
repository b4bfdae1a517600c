#!/usr/bin/env bash
# start.sh DIR PORT
# start.sh KAFKA_HOME RUNDIR PORT
#
# Starts one Apache Kafka node in KRaft mode (broker and controller in one
# process) for the real-broker test suite, and returns once it serves
# clients. KAFKA_HOME (or DIR) holds libs/ from fetch.sh; RUNDIR (or DIR)
# receives server.properties, the data under data/, kafka.log and kafka.pid.
# The two-argument form keeps everything in one folder; the three-argument
# form (used by tools/run-tests.sh) keeps the downloaded jars apart from the
# throw-away state of one run.
#
# Clients use PLAINTEXT://127.0.0.1:PORT; the controller listens on PORT+1.
# Every fresh data folder is formatted with a random cluster id, so two runs
# never mistake each other's data. Single-node settings (replication 1) are
# what a one-broker cluster needs for the internal offsets and transaction
# topics; num.partitions=12 matches the engine's topics.
set -euo pipefail

usage() {
    echo "usage: $0 DIR PORT | $0 KAFKA_HOME RUNDIR PORT" >&2
    exit 2
}
case $# in
    2) home=$1 run=$1 port=$2 ;;
    3) home=$1 run=$2 port=$3 ;;
    *) usage ;;
esac
case $port in
    '' | *[!0-9]*) usage ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65534 ]; then
    usage
fi
controller_port=$((port + 1))
libs=$(cd "$home" && pwd)/libs
startup_timeout=90

if [ ! -f "$libs/.complete" ]; then
    echo "start.sh: no Kafka in $libs; run tools/kafka/fetch.sh $home first" >&2
    exit 1
fi
if ! command -v java >/dev/null 2>&1; then
    echo "start.sh: java is not on PATH (Kafka 3.9 needs Java 11 or newer)" >&2
    exit 1
fi
mkdir -p "$run"
run=$(cd "$run" && pwd)

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if [ -f "$run/kafka.pid" ] && kill -0 "$(cat "$run/kafka.pid")" 2>/dev/null; then
    echo "start.sh: Kafka already runs from $run (pid $(cat "$run/kafka.pid"))" >&2
    exit 1
fi
for p in "$port" "$controller_port"; do
    if port_open "$p"; then
        echo "start.sh: port $p is already in use" >&2
        exit 1
    fi
done

cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$run/data
metadata.log.dir=$run/data
num.partitions=12
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
# Tests start consumer groups all the time; the broker's default 3 s wait
# for more members before the first assignment only slows them down.
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS

cat >"$run/log4j.properties" <<'PROPS'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.kafka.log.LogCleaner=WARN
PROPS

java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$run/log4j.properties")

if [ ! -f "$run/data/meta.properties" ]; then
    cluster_id=$(java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool random-uuid)
    java "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$run/server.properties" >"$run/format.log" 2>&1 || {
        echo "start.sh: formatting $run/data failed:" >&2
        cat "$run/format.log" >&2
        exit 1
    }
fi

nohup java "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$run/server.properties" \
    >"$run/kafka.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$run/kafka.pid"

# Ready means the client port accepts connections and the server has logged
# that it started (the port opens slightly before the broker has joined the
# metadata quorum).
deadline=$((SECONDS + startup_timeout))
while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "start.sh: Kafka exited during startup; last lines of $run/kafka.log:" >&2
        tail -n 30 "$run/kafka.log" >&2
        rm -f "$run/kafka.pid"
        exit 1
    fi
    if port_open "$port" && grep -q 'Kafka Server started' "$run/kafka.log"; then
        echo "Kafka $(cat "$libs/.complete") (KRaft) listening on 127.0.0.1:$port, pid $pid, state in $run"
        exit 0
    fi
    sleep 0.5
done
echo "start.sh: Kafka did not accept connections on port $port within ${startup_timeout}s" >&2
tail -n 30 "$run/kafka.log" >&2
kill "$pid" 2>/dev/null || true
rm -f "$run/kafka.pid"
exit 1
