# Sourced by bench-http.sh and bench-stall.sh: the checkout endpoint both compare tools on.
#
#   install_missing PACKAGE...   installs Debian packages (nginx-light, wrk, time) with apt-get
#   endpoint_up WORK PORT        nginx-light with one worker on 127.0.0.1:PORT answering
#                                `POST /checkout` with 201 and `{}` (access log off), its files
#                                and pid in WORK; waits until it answers. The caller stops it:
#   endpoint_down WORK           continues a worker left stopped (bench-stall's SIGSTOP), stops
#                                nginx

sudo_if_needed() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

install_missing() {
    (($#)) || return 0
    echo "installing $* from Debian's packages" >&2
    sudo_if_needed apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "$@" >&2
    # Debian starts the packaged nginx on port 80; only ours is wanted.
    sudo_if_needed service nginx stop >/dev/null 2>&1 || true
}

endpoint_up() { # WORK PORT
    cat >"$1/nginx.conf" <<CONF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 8192; }
worker_rlimit_nofile 16384;
http {
    access_log off;
    client_body_temp_path $1/body;
    server {
        listen 127.0.0.1:$2 reuseport backlog=8192;
        keepalive_requests 1000000;
        location = /checkout { return 201 '{}'; }
    }
}
CONF
    /usr/sbin/nginx -p "$1" -c "$1/nginx.conf"
    for _ in $(seq 50); do
        curl -s -o /dev/null -X POST "http://127.0.0.1:$2/checkout" && return 0
        sleep 0.1
    done
    echo "nginx did not answer on 127.0.0.1:$2 (see $1/error.log)" >&2
    return 1
}

endpoint_down() { # WORK
    local master
    master=$(cat "$1/nginx.pid" 2>/dev/null) || return 0
    pkill -CONT -P "$master" 2>/dev/null || true
    kill "$master" 2>/dev/null || true
}
