#!/usr/bin/env bash
# Starts, stops or restarts the loopback brokers doorbuster's tests and examples use.
#
#   scripts/brokers.sh start [redis|rabbitmq|nats|kafka|all]    # start what is down (default all)
#   scripts/brokers.sh stop KIND
#   scripts/brokers.sh restart KIND
#   scripts/brokers.sh status
#
# Installs a missing server from Debian's packages (Redis, RabbitMQ, NATS) or, for Kafka,
# Tansu 0.6.0 through scripts/install-tansu.sh (cached; about 15 minutes the first time).
# Everything listens on 127.0.0.1 only. Redis and Tansu keep nothing on disk.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${DOORBUSTER_CACHE:-$HOME/.cache/doorbuster}"

port_of() {
    case "$1" in
        redis) echo 6379 ;; rabbitmq) echo 5672 ;; nats) echo 4222 ;; kafka) echo 9092 ;;
        *) echo "unknown broker $1 (expected redis, rabbitmq, nats or kafka)" >&2; exit 2 ;;
    esac
}

is_up() { (exec 3<>"/dev/tcp/127.0.0.1/$(port_of "$1")") 2>/dev/null; }

wait_port() { # KIND UP|DOWN SECONDS
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if [[ $2 == up ]] && is_up "$1"; then return 0; fi
        if [[ $2 == down ]] && ! is_up "$1"; then return 0; fi
        sleep 0.2
    done
    echo "$1 did not come $2 within $3 s" >&2
    return 1
}

sudo_if_needed() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 from Debian's packages" >&2
    sudo_if_needed apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "$2" >&2
}

start_one() {
    local kind=$1
    if is_up "$kind"; then echo "$kind: up on 127.0.0.1:$(port_of "$kind")"; return 0; fi
    case "$kind" in
        redis)
            apt_install redis-server redis-server
            mkdir -p "$cache"
            redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
                --appendonly no --dir "$cache" --logfile "$cache/redis.log"
            wait_port redis up 20 ;;
        rabbitmq)
            apt_install rabbitmq-server rabbitmq-server
            rabbitmq-server -detached
            wait_port rabbitmq up 90
            # The port opens before the broker accepts logins.
            rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || sleep 3 ;;
        nats)
            apt_install nats-server nats-server
            # The machine's own store when there is one, so a restart keeps JetStream's data.
            local store="$cache/nats"
            [[ -w /var/lib/nats-server ]] && store=/var/lib/nats-server
            mkdir -p "$store"
            nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$store" \
                -l "$cache/nats.log" >/dev/null 2>&1 &
            wait_port nats up 20 ;;
        kafka)
            local tansu
            tansu="$("$here/install-tansu.sh")"
            nohup "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
                --advertised-listener-url tcp://127.0.0.1:9092 \
                --storage-engine memory://tansu/ >"$cache/tansu.log" 2>&1 &
            wait_port kafka up 30 ;;
    esac
    echo "$kind: started on 127.0.0.1:$(port_of "$kind")"
}

stop_one() {
    local kind=$1
    is_up "$kind" || { echo "$kind: already down"; return 0; }
    case "$kind" in
        redis) redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
        rabbitmq) rabbitmqctl stop >/dev/null 2>&1 || true ;;
        nats) pkill -TERM -x nats-server || true ;;
        kafka) pkill -TERM -f 'tansu broker' || true ;;
    esac
    wait_port "$kind" down 60
    echo "$kind: stopped"
}

all=(redis rabbitmq nats kafka)
cmd=${1:-start}
target=${2:-all}
if [[ $target == all ]]; then kinds=("${all[@]}"); else port_of "$target" >/dev/null; kinds=("$target"); fi

case "$cmd" in
    start) for k in "${kinds[@]}"; do start_one "$k"; done ;;
    stop) for k in "${kinds[@]}"; do stop_one "$k"; done ;;
    restart) for k in "${kinds[@]}"; do stop_one "$k"; start_one "$k"; done ;;
    status) for k in "${all[@]}"; do if is_up "$k"; then echo "$k: up"; else echo "$k: down"; fi; done ;;
    *) echo "usage: $0 start|stop|restart|status [redis|rabbitmq|nats|kafka|all]" >&2; exit 2 ;;
esac
