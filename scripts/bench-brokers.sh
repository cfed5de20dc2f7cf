#!/usr/bin/env bash
# Publish rate: doorbuster vs the broker's own tool, in one run, same payload size.
#
#   scripts/bench-brokers.sh [SECONDS] [CLIENTS]      (defaults 10 s, 50 in flight)
#
# Redis: `doorbuster bench --publish-only` (one multiplexed connection, CLIENTS publishes in
# flight, each awaited until XADD answered) against redis-benchmark running XADD with the
# same fields doorbuster writes (its 7 metadata fields, values of the same length, and the
# 1,017-byte payload), both as CLIENTS connections with one command in flight
# (-c CLIENTS -P 1) and as one connection pipelining CLIENTS commands (-c 1 -P CLIENTS).
# Kafka (Tansu): doorbuster's acks=all idempotent producer (one producer, CLIENTS publishes in
# flight) against `tansu perf produce` with CLIENTS producers (a connection each, one
# single-record request in flight, ~1 KB records, one partition). Needs a release build and
# the brokers up (scripts/brokers.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
clients=${2:-50}
db=${DOORBUSTER:-${CARGO_TARGET_DIR:-target}/release/doorbuster}

echo "== redis: doorbuster"
$db bench --publish-only --target redis://127.0.0.1:6379 --seconds "$seconds" --clients "$clients"
value=$(head -c 1017 /dev/zero | tr '\0' 'x')
# What `EventMeta::to_headers` writes for an order a few minutes into a run.
fields=(db-event-id 1234567 db-order-id 1234567 db-seq 0 db-intended-at 123456789012
        db-intended-wall-ns 1796610000123456789 db-sent-at 123456889012
        idempotency-key ik_5f0e3c2a9b1d4e67 payload "$value")
n=$((clients * 4000))
for mode in "-c $clients -P 1" "-c 1 -P $clients"; do
    echo "== redis: redis-benchmark $mode -n $n XADD (doorbuster's 8 fields)"
    # shellcheck disable=SC2086
    redis-benchmark -h 127.0.0.1 -p 6379 $mode -n "$n" -q \
        XADD doorbuster-bench-stream '*' "${fields[@]}" | tr '\r' '\n' | tail -1 | sed 's/.*: //'
done
redis-cli -h 127.0.0.1 -p 6379 del doorbuster-bench-stream >/dev/null

echo "== kafka: doorbuster"
$db bench --publish-only --target kafka://127.0.0.1:9092 --seconds "$seconds" --clients "$clients"
tansu="$(scripts/install-tansu.sh)"
topic=doorbuster-bench-tansu-perf
echo "== kafka: tansu perf produce --producers $clients (1017 B records, one per request)"
"$tansu" topic create --broker tcp://127.0.0.1:9092 --partitions 1 "$topic" >/dev/null
# tansu perf 0.6.0 prints its rate only from its OpenTelemetry metric exporter, every
# OTEL_METRIC_EXPORT_INTERVAL (default 60 s: longer than the run, so it printed nothing). Its
# own records/s divides by whole seconds, and an interval a hair under 1 s panics it
# ("throughput"), so: reports every 2 s, each line's "N records sent" (since the previous
# report) timed here, the first report (connecting, warm-up) left out.
{ OTEL_METRIC_EXPORT_INTERVAL=2000 "$tansu" perf --broker tcp://127.0.0.1:9092 "$topic" produce \
    --producers "$clients" --record-size 1017 --duration "${seconds}s" 2>/dev/null || true; } |
    while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done |
    awk '$2 == "elapsed:" && $3 <= 3 {
            for (i = 1; i < NF; i++) if ($(i + 1) == "records" && $(i + 2) == "sent,") r = $i
            if (n++ == 0) t0 = $1; else { sum += r; t1 = $1 }
         }
         END { if (n > 1) printf "%.0f records/s (%d records in the %d reports after the first, %.2f s)\n", sum / (t1 - t0), sum, n - 1, t1 - t0 }'
"$tansu" topic delete --broker tcp://127.0.0.1:9092 "$topic" >/dev/null

echo "== end to end: doorbuster bench per broker (every check on; see reports/BENCHMARKS.md)"
