#!/usr/bin/env bash
# Before/after: the same embedded-pipeline runs with two doorbuster binaries, alternated, in
# one sitting (the machine is shared and noisy: read the medians and the ratio).
#
#   scripts/bench-ab.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]      (default 5 rounds)
#   WORKLOADS="lag" scripts/bench-ab.sh ...                      (a subset of the workloads)
#
# Workloads (the bench trial's shape: embedded broker, all five services and the provider in
# process with zero added latency, uniform arrivals, every check on, fulfilment p99 < 1 s):
#   cpu   20,000 orders/s for 5 s: CPU seconds (user + sys) and peak RSS for 100,000 orders
#   peak  65,000 orders/s for 5 s: the verdict and fulfilment p99 near the sustained maximum
#   lag    2,000 orders/s for 5 s: the generator's send lag p50 and p99 (how late arrivals left)
# Build each binary with `cargo build --release` at the commit it stands for.
set -euo pipefail
before=${1:?before binary}
after=${2:?after binary}
rounds=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp "$(dirname "$0")/pipeline.yaml" "$work/ab.yaml"

run_one() { # LABEL BINARY WORKLOAD
    local label=$1 bin=$2 workload=$3 scale=1
    [[ $workload == peak ]] && scale=3.25
    [[ $workload == lag ]] && scale=0.1
    local out="$work/$label-$workload"
    rm -rf "$out"
    local code=0
    /usr/bin/time -f "%U %S %e %M" -o "$work/time" \
        "$bin" run "$work/ab.yaml" --quiet --out "$out" --rate-scale "$scale" >/dev/null 2>&1 || code=$?
    read -r user sys wall rss < <(tail -1 "$work/time")
    local p99 lag
    p99=$(python3 -c "import json,sys; s=json.load(open('$out/summary.json')); \
print(next((l['p99_us'] for l in s.get('latency',[]) if l.get('stage')=='order.created -> order.fulfilled'),0))" 2>/dev/null || echo "?")
    lag=$(python3 -c "import json; l=json.load(open('$out/summary.json'))['send_lag']; \
print(f\"send_lag_p50_us={l['p50_us']} send_lag_p99_us={l['p99_us']}\")" 2>/dev/null || echo "")
    printf '%s %s exit=%s cpu=%.2f wall=%s rss_mb=%d fulfilled_p99_us=%s %s\n' \
        "$label" "$workload" "$code" "$(echo "$user + $sys" | bc)" "$wall" $((rss / 1024)) "$p99" "$lag"
}

for workload in ${WORKLOADS:-cpu peak lag}; do
    for round in $(seq "$rounds"); do
        if ((round % 2)); then
            run_one before "$before" "$workload"
            run_one after "$after" "$workload"
        else
            run_one after "$after" "$workload"
            run_one before "$before" "$workload"
        fi
    done
done | tee "$work/results"

echo "== medians"
python3 - "$work/results" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    label, workload, *fields = line.split()
    for f in fields:
        k, v = f.split("=")
        try:
            rows[(workload, label)][k].append(float(v))
        except ValueError:
            pass
for workload in sorted({w for w, _ in rows}):
    for label in ("before", "after"):
        r = rows[(workload, label)]
        med = {k: statistics.median(v) for k, v in r.items()}
        passes = sum(1 for e in r["exit"] if e == 0)
        print(f"{workload:4} {label:6} pass {passes}/{len(r['exit'])}  cpu {med['cpu']:.2f} s  "
              f"wall {med['wall']:.2f} s  rss {med['rss_mb']:.0f} MB  "
              f"fulfilled p99 {med.get('fulfilled_p99_us', 0)/1000:.1f} ms  "
              f"send lag p50 {med.get('send_lag_p50_us', 0):.0f} us "
              f"p99 {med.get('send_lag_p99_us', 0):.0f} us")
    b, a = rows[(workload, "before")], rows[(workload, "after")]
    print(f"{workload:4} after/before cpu {statistics.median(a['cpu'])/statistics.median(b['cpu']):.3f}")
PY
