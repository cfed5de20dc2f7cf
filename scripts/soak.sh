#!/usr/bin/env bash
# The soak: a long run's peak memory and its memory over time, from outside the process.
#
#   scripts/soak.sh [BINARY] [RATE_SCALE] [OUT]     (defaults: target/release/doorbuster, 1, /tmp/soak)
#
# Runs the bundled `soak` scenario (10 million orders at 10,000/s, every check on, about 17
# minutes; RATE_SCALE 0.1 makes it a million in the same time) under `/usr/bin/time -v`, and
# samples the process's resident set every 10 s into OUT/rss.csv (seconds, MiB). Memory
# bounded by design means: the samples level off after the warm-up instead of growing with
# the orders. Prints the peak RSS, the orders and the verdict. Build the binary with
# `cargo build --release` first.
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/doorbuster}
scale=${2:-1}
out=${3:-/tmp/soak}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"

/usr/bin/time -v "$bin" run soak --rate-scale "$scale" --quiet --out "$out/run" \
    >"$out/stdout.txt" 2>"$out/time.txt" &
wrapper=$!
# The doorbuster process itself (the child of time).
pid=""
for _ in $(seq 50); do
    pid=$(pgrep -P "$wrapper" || true)
    [ -n "$pid" ] && break
    sleep 0.1
done
echo "seconds,rss_mib" >"$out/rss.csv"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")
    [ -n "$rss_kib" ] && echo "$(( $(date +%s) - start )),$(( rss_kib / 1024 ))" >>"$out/rss.csv"
    sleep 10
done
status=0
wait "$wrapper" || status=$?

peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/time.txt")
# The first of each key is the run's own (per-second samples come later in the file).
orders=$(grep -m1 -o '"attempted": *[0-9]*' "$out/run/summary.json" | grep -o '[0-9]*$' || echo 0)
verdict=$(grep -m1 -o '"verdict": *"[a-z]*"' "$out/run/summary.json" | grep -o '"[a-z]*"$' || echo "?")
echo "exit $status, verdict $verdict, $orders orders, peak RSS $(( peak_kib / 1024 )) MiB" \
     "($(( peak_kib * 1024 / (orders > 0 ? orders : 1) )) B per order); samples in $out/rss.csv"
grep -E "Elapsed|User time|System time" "$out/time.txt"
