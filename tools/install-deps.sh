#!/usr/bin/env bash
# Installs the Debian packages the engine needs to build, test and run its
# embedded default, when any is missing. Runs without questions (CI, fresh
# machines); uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  librdkafka-dev libpq-dev libcurl4-openssl-dev libjson-c-dev libssl-dev
  libmicrohttpd-dev libicu-dev libcriterion-dev libphonenumber-dev
  postgresql postgresql-client
  python3 python3-aiosmtpd openssl curl
  nodejs npm
)
# The real-broker suite needs a JDK and Maven to fetch Apache Kafka.
if [ "${CRM_WITH_KAFKA_DEPS:-0}" = 1 ]; then
  packages+=(default-jdk-headless maven)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# A JDK, Maven or Node.js installed outside Debian's packages is fine too
# (npm installs Stoplight Prism for the Twilio spec test).
filtered=()
for p in "${missing[@]+"${missing[@]}"}"; do
  case "$p" in
    default-jdk-headless) command -v java >/dev/null 2>&1 || filtered+=("$p") ;;
    maven) command -v mvn >/dev/null 2>&1 || filtered+=("$p") ;;
    nodejs) command -v node >/dev/null 2>&1 || filtered+=("$p") ;;
    npm) command -v npm >/dev/null 2>&1 || filtered+=("$p") ;;
    *) filtered+=("$p") ;;
  esac
done
missing=("${filtered[@]+"${filtered[@]}"}")

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
