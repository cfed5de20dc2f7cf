#!/usr/bin/env bash
# A 1-second stall of a checkout endpoint at 2,000 requests/s: doorbuster's checkout latency
# against oha's with latency correction (both time each request from when it was due, not
# from when it could be sent, so the requests the stall held back count in full).
#
#   scripts/bench-stall.sh [ROUNDS]         (default 3)
#
# The endpoint is Debian's nginx-light on 127.0.0.1:18080 answering `POST /checkout` with 201
# (one worker process); 3 s into each 8 s run the script stops that worker with SIGSTOP and
# lets it go on with SIGCONT 1.0 s later: a real stall of a real endpoint, whatever the tool.
# Installs nginx-light from Debian's packages and oha 1.16.0 with `cargo install` into
# ~/.cache/doorbuster/oha-1.16.0 when missing. Each round runs oha (`-q 2000 -z 8s
# --latency-correction`, 2,500 connections so that the stall does not run out of them) and
# `doorbuster run` (uniform arrivals at 2,000/s for 8 s, the same body size), alternating, and
# prints p50, p99 and max of each. Needs a release build (DOORBUSTER= or CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
db=${DOORBUSTER:-${CARGO_TARGET_DIR:-target}/release/doorbuster}
port=18080
cache="${DOORBUSTER_CACHE:-$HOME/.cache/doorbuster}"
oha="$cache/oha-1.16.0/bin/oha"

# shellcheck source=scripts/checkout-endpoint.sh
source scripts/checkout-endpoint.sh
[[ -x /usr/sbin/nginx ]] || install_missing nginx-light
if [[ ! -x $oha ]]; then
    echo "installing oha 1.16.0 into $cache/oha-1.16.0 (a few minutes the first time)" >&2
    CARGO_TARGET_DIR="$cache/oha-build" cargo install oha --locked --version 1.16.0 \
        --root "$cache/oha-1.16.0" >&2
    rm -rf "$cache/oha-build"
fi

work=$(mktemp -d)
trap 'endpoint_down "$work"; rm -rf "$work"' EXIT
ulimit -n 16384
endpoint_up "$work" "$port"
worker=$(pgrep -P "$(cat "$work/nginx.pid")")

cat >"$work/stall.yaml" <<YAML
name: stall
seed: 1
target: "http://127.0.0.1:$port/checkout"
load:
  arrivals: uniform
  checkout_timeout: 5s
  max_send_lag: 1s
  phases:
    - { hold: 8s, rate: 2000/s }
  drain: 10s
checks:
  checkout_success_rate: ">= 99%"
YAML
head -c 1017 /dev/zero | tr '\0' 'x' >"$work/request.json"

stall() { sleep 3; kill -STOP "$worker"; sleep 1; kill -CONT "$worker"; }

for round in $(seq "$rounds"); do
    stall &
    "$oha" -q 2000 -z 8s --latency-correction -c 2500 --no-tui --output-format json \
        -m POST -T application/json -H "Idempotency-Key: ik_5f0e3c2a9b1d4e67" -D "$work/request.json" \
        "http://127.0.0.1:$port/checkout" >"$work/oha.json" 2>/dev/null || true
    wait
    python3 - "$work/oha.json" "$round" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["latencyPercentiles"]
ok = sum(v for k, v in s.get("statusCodeDistribution", {}).items() if k.startswith("2"))
print(f"round {sys.argv[2]}: oha        p50 {p['p50'] * 1e3:7.1f} ms  p99 {p['p99'] * 1e3:7.1f} ms  "
      f"max {s['summary']['slowest'] * 1e3:7.1f} ms  ({ok} answered 2xx)")
PY
    sleep 1
    stall &
    rm -rf "$work/run"
    "$db" run "$work/stall.yaml" --quiet --out "$work/run" >/dev/null 2>&1 || true
    wait
    python3 - "$work/run/summary.json" "$round" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
p = next(l for l in s["latency"] if l["stage"] == "order.created")
print(f"round {sys.argv[2]}: doorbuster p50 {p['p50_us'] / 1e3:7.1f} ms  p99 {p['p99_us'] / 1e3:7.1f} ms  "
      f"max {p['max_us'] / 1e3:7.1f} ms  ({s['orders']['accepted']} accepted of {s['orders']['attempted']}, "
      f"send lag p99 {s['send_lag']['p99_us'] / 1e3:.1f} ms)")
PY
    sleep 1
done
