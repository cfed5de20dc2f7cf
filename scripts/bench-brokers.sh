#!/usr/bin/env bash
# Publish rate: doorbuster vs the broker's own tool, in one run, same payload size.
#
#   scripts/bench-brokers.sh [SECONDS] [CLIENTS]      (defaults 10 s, 50 in flight)
#
# Redis: `doorbuster bench --publish-only` (one multiplexed connection, CLIENTS publishes in
# flight, each awaited until XADD answered) against redis-benchmark running XADD with a
# ~1 KB field, both as CLIENTS connections with one command in flight (-c CLIENTS -P 1) and
# as one connection pipelining CLIENTS commands (-c 1 -P CLIENTS).
# Kafka (Tansu): doorbuster's acks=all idempotent producer (tansu perf has no printed
# summary to compare with). Needs a release build and the brokers up (scripts/brokers.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
clients=${2:-50}
db=./target/release/doorbuster

echo "== redis: doorbuster"
$db bench --publish-only --target redis://127.0.0.1:6379 --seconds "$seconds" --clients "$clients"
value=$(head -c 1017 /dev/zero | tr '\0' 'x')
n=$((clients * 4000))
for mode in "-c $clients -P 1" "-c 1 -P $clients"; do
    echo "== redis: redis-benchmark $mode -n $n XADD (1017 B field)"
    # shellcheck disable=SC2086
    redis-benchmark -h 127.0.0.1 -p 6379 $mode -n "$n" -q \
        XADD doorbuster-bench-stream '*' payload "$value" | tr '\r' '\n' | tail -1 | sed 's/.*: //'
done
redis-cli -h 127.0.0.1 -p 6379 del doorbuster-bench-stream >/dev/null

echo "== kafka: doorbuster"
$db bench --publish-only --target kafka://127.0.0.1:9092 --seconds "$seconds" --clients "$clients"
# `tansu perf produce` (0.6.0) prints no summary: it reports only through OpenTelemetry
# metrics, so its rate cannot be read here without an OTLP collector; see BENCHMARKS.md.

echo "== end to end: doorbuster bench per broker (every check on; see reports/BENCHMARKS.md)"
