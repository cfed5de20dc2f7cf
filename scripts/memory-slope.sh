#!/usr/bin/env bash
# Memory an order costs for the rest of a run, before and after a change, in one sitting.
#
#   scripts/memory-slope.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]     (default 2 rounds)
#
# Each binary runs the same sustained hold (5,000 orders/s, embedded broker, all five
# services, provider in process at 1-5 ms, every check on) for 20 s and for 60 s under
# `/usr/bin/time`; the slope of peak RSS between the two lengths (per extra order) is what a
# longer run keeps per order. Binaries alternate; medians are printed. Build each binary with
# `cargo build --release` at the commit it stands for.
set -euo pipefail
before=${1:?before binary}
after=${2:?after binary}
rounds=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scenario() { # SECONDS
    cat <<YAML
name: memory-slope
seed: 17
load:
  arrivals: uniform
  max_in_flight: 200000
  drain: 30s
  phases:
    - { hold: ${1}s, rate: 5000/s }
provider: { via: in_process, latency: 1ms..5ms }
checks:
  settle_within: 30s
  checkout_success_rate: ">= 99.9%"
  no_loss: true
  no_duplicate_effects: true
YAML
}
scenario 20 >"$work/short.yaml"
scenario 60 >"$work/long.yaml"

run_one() { # LABEL BINARY LENGTH
    local out="$work/$1-$3" code=0
    /usr/bin/time -f "%M" -o "$work/time" \
        "$2" run "$work/$3.yaml" --quiet --out "$out" >/dev/null 2>&1 || code=$?
    local orders
    orders=$(python3 -c "import json; print(json.load(open('$out/summary.json'))['orders']['attempted'])")
    echo "$1 $3 exit=$code orders=$orders rss_kib=$(tail -1 "$work/time")"
}

for round in $(seq "$rounds"); do
    for length in short long; do
        if ((round % 2)); then
            run_one before "$before" $length
            run_one after "$after" $length
        else
            run_one after "$after" $length
            run_one before "$before" $length
        fi
    done
done | tee "$work/results"

python3 - "$work/results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, length, *fields = line.split()
    f = dict(x.split("=") for x in fields)
    rows[(label, length)].append((int(f["orders"]), int(f["rss_kib"])))
for label in ("before", "after"):
    s, l = rows[(label, "short")], rows[(label, "long")]
    so, sr = statistics.median(o for o, _ in s), statistics.median(r for _, r in s)
    lo, lr = statistics.median(o for o, _ in l), statistics.median(r for _, r in l)
    print(f"{label:6} {so:,.0f} orders {sr / 1024:,.0f} MiB; {lo:,.0f} orders {lr / 1024:,.0f} MiB; "
          f"{(lr - sr) * 1024 / (lo - so):,.0f} B per order")
PY
