#!/usr/bin/env bash
# HTTP checkout rate: doorbuster vs wrk, alternating, against the same nginx endpoint.
#
#   scripts/bench-http.sh [ROUNDS] [SECONDS] [CONNECTIONS]     (defaults 3, 10 s, 50)
#
# The endpoint is Debian's nginx-light on 127.0.0.1:18080 answering `POST /checkout` with
# 201 and a 2-byte body (one worker process, access log off), started here from a config in
# a temporary folder and stopped at the end. Installs the missing ones of nginx-light and wrk
# from Debian's packages (apt-get). Each round runs wrk (2 threads, CONNECTIONS connections,
# a 1,017-byte JSON body with Content-Type and Idempotency-Key, as doorbuster sends) and then
# `doorbuster bench --publish-only --clients CONNECTIONS` (CONNECTIONS checkouts in flight,
# each a POST of a generated order with its own key, awaited until answered), both under GNU
# time for the CPU they used. Prints each run and, at the end, the medians and doorbuster's
# ratio to wrk. Needs a release build (DOORBUSTER= or CARGO_TARGET_DIR for the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-50}
db=${DOORBUSTER:-${CARGO_TARGET_DIR:-target}/release/doorbuster}
port=18080

# shellcheck source=scripts/checkout-endpoint.sh
source scripts/checkout-endpoint.sh
missing=()
[[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v /usr/bin/time >/dev/null || missing+=(time)
install_missing "${missing[@]}"

work=$(mktemp -d)
trap 'endpoint_down "$work"; rm -rf "$work"' EXIT
endpoint_up "$work" "$port"

body=$(printf '{"order_id":1234567,"lines":"%s"}' "$(head -c 990 /dev/zero | tr '\0' 'x')")
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = "ik_5f0e3c2a9b1d4e67"
EOF
echo "nginx-light $(dpkg-query -W -f='${Version}' nginx-light), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), body ${#body} B"

cpu() { awk '{ printf "%.2f", $1 + $2 }' "$1"; }
wrk_rates=() db_rates=() wrk_cpu=() db_cpu=()
for round in $(seq "$rounds"); do
    /usr/bin/time -f "%U %S" -o "$work/time" \
        wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$port/checkout" >"$work/wrk"
    rate=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk")
    total=$(awk '/requests in/ { print $1 }' "$work/wrk")
    wrk_rates+=("$rate") wrk_cpu+=("$(awk -v c="$(cpu "$work/time")" -v n="$total" 'BEGIN { printf "%.2f", c * 1e6 / n }')")
    echo "round $round: wrk        $rate req/s, ${wrk_cpu[-1]} us CPU per request ($(grep -c Non-2xx "$work/wrk" || true) non-2xx lines)"

    /usr/bin/time -f "%U %S" -o "$work/time" \
        "$db" bench --publish-only --target "http://127.0.0.1:$port/checkout" \
        --seconds "$seconds" --clients "$connections" >"$work/db"
    rate=$(sed -n 's/.*: \([0-9]*\) acked publishes\/s (\([0-9]*\) acked, \([0-9]*\) failed.*/\1/p' "$work/db")
    acked=$(sed -n 's/.*(\([0-9]*\) acked, .*/\1/p' "$work/db")
    failed=$(sed -n 's/.*acked, \([0-9]*\) failed.*/\1/p' "$work/db")
    db_rates+=("$rate") db_cpu+=("$(awk -v c="$(cpu "$work/time")" -v n="$acked" 'BEGIN { printf "%.2f", c * 1e6 / n }')")
    echo "round $round: doorbuster $rate req/s, ${db_cpu[-1]} us CPU per request ($failed failed)"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
w=$(median "${wrk_rates[@]}") d=$(median "${db_rates[@]}")
echo "medians of $rounds: wrk $w req/s ($(median "${wrk_cpu[@]}") us CPU each), doorbuster $d req/s ($(median "${db_cpu[@]}") us CPU each): $(awk -v d="$d" -v w="$w" 'BEGIN { printf "%.2f", d / w }')x wrk"
