#!/usr/bin/env bash
# CPU per order at a low and a high rate: the embedded pipeline's fixed costs per event.
#
#   scripts/cpu-by-rate.sh [BINARY] [ROUNDS]        (defaults: the release build, 3 rounds)
#
# scripts/pipeline.yaml, bench-ab's shape (embedded broker, all five services and the provider
# in process at 0 ms, uniform arrivals, every check on): 500 orders/s for 60 s (a binary with
# --hold, 6760c6c or later) and 20,000 orders/s for 5 s,
# alternating, each under `perf stat` (task-clock, context switches, CPU migrations) when perf
# is installed, else GNU time. Prints per round the CPU microseconds and context switches per
# order attempted, and the medians and their ratio at the end (the aim: 500/s costs at most 2x
# what 20,000/s does per order). TOKIO_WORKER_THREADS, when set, passes through to the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/doorbuster}
rounds=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scripts/pipeline.yaml (20,000/s for 5 s as written), and at 500/s held for 60 s.
low=(--rate-scale 0.025 --hold 60s)
high=()

one() { # low|high -> "cpu_us_per_order switches_per_order"
    local out="$work/run-$1" flags
    if [[ $1 == low ]]; then flags=("${low[@]}"); else flags=("${high[@]}"); fi
    rm -rf "$out"
    if command -v perf >/dev/null; then
        perf stat -x, -e task-clock,context-switches,cpu-migrations -o "$work/stat" \
            "$bin" run scripts/pipeline.yaml "${flags[@]}" --quiet --out "$out" >/dev/null 2>&1 || true
        local orders ms switches
        orders=$(python3 -c "import json; print(json.load(open('$out/summary.json'))['orders']['attempted'])")
        ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$work/stat")
        switches=$(awk -F, '$3 == "context-switches" { print $1 }' "$work/stat")
        awk -v ms="$ms" -v n="$orders" -v s="$switches" 'BEGIN { printf "%.1f %.2f\n", ms * 1000 / n, s / n }'
    else
        /usr/bin/time -f "%U %S %c %w" -o "$work/time" \
            "$bin" run scripts/pipeline.yaml "${flags[@]}" --quiet --out "$out" >/dev/null 2>&1 || true
        local orders
        orders=$(python3 -c "import json; print(json.load(open('$out/summary.json'))['orders']['attempted'])")
        awk -v n="$orders" '{ printf "%.1f %.2f\n", ($1 + $2) * 1e6 / n, ($3 + $4) / n }' "$work/time"
    fi
}

lows=() highs=()
for round in $(seq "$rounds"); do
    read -r cpu sw < <(one low)
    lows+=("$cpu")
    echo "round $round:    500/s  $cpu us CPU per order, $sw context switches per order"
    read -r cpu sw < <(one high)
    highs+=("$cpu")
    echo "round $round: 20,000/s  $cpu us CPU per order, $sw context switches per order"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
l=$(median "${lows[@]}") h=$(median "${highs[@]}")
echo "medians of $rounds: 500/s $l us, 20,000/s $h us per order: $(awk -v l="$l" -v h="$h" 'BEGIN { printf "%.1f", l / h }')x"
