#!/usr/bin/env bash
# fetch.sh DEST - download Apache Kafka (Scala 2.13 build, KRaft capable) and
# every runtime dependency from Maven Central into DEST/libs, for the
# real-broker test suite.
#
# Maven resolves the dependency tree from a generated pom, so there is no
# hand-maintained jar list to drift from the release. 3.9.1 is preferred and
# 3.9.0 is the fallback for mirrors that lack it. A reload4j binding is added
# because Kafka 3.9 logs through slf4j and would otherwise log nothing.
#
# Idempotent: DEST/libs/.complete records the version once every jar is in
# place, and a second run with that marker present does nothing. The jars are
# first copied into a temporary folder and renamed into place, so an
# interrupted run never leaves a half-filled libs/ that looks complete.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
# Absolute, because Maven resolves a relative outputDirectory against the
# generated pom's folder, not the caller's working directory.
dest=$(realpath -m "$1")
versions=(3.9.1 3.9.0)
slf4j_version=1.7.36

if [ -f "$dest/libs/.complete" ]; then
    echo "kafka $(cat "$dest/libs/.complete") already in $dest/libs"
    exit 0
fi

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

write_pom() {
    cat >"$work/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>crm.engine</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$1</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$slf4j_version</version>
    </dependency>
  </dependencies>
</project>
POM
}

fetched=""
for v in "${versions[@]}"; do
    write_pom "$v"
    rm -rf "$work/libs"
    echo "fetching org.apache.kafka:kafka_2.13:$v and its runtime dependencies" >&2
    if mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
        fetched=$v
        break
    fi
    echo "kafka $v could not be resolved (see below); trying the next version" >&2
    tail -n 5 "$work/mvn.log" >&2 || true
done
if [ -z "$fetched" ]; then
    echo "fetch.sh: no Kafka version could be downloaded" >&2
    exit 1
fi

# The broker main class and the storage formatter must both be present, or
# start.sh would fail much later with a less obvious ClassNotFoundException.
core_jar="$work/libs/kafka_2.13-$fetched.jar"
for cls in kafka/Kafka.class kafka/tools/StorageTool.class; do
    if ! unzip -l "$core_jar" "$cls" >/dev/null 2>&1; then
        echo "fetch.sh: $cls missing from $core_jar" >&2
        exit 1
    fi
done
if ! ls "$work/libs"/slf4j-reload4j-*.jar >/dev/null 2>&1; then
    echo "fetch.sh: the slf4j reload4j binding is missing" >&2
    exit 1
fi

echo "$fetched" >"$work/libs/.complete"
rm -rf "$dest/libs"
mv "$work/libs" "$dest/libs"
echo "kafka $fetched fetched into $dest/libs ($(ls "$dest/libs" | grep -c '\.jar$') jars)"
