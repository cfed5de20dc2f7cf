#!/usr/bin/env bash
# Installs Tansu 0.6.0 (a Kafka API-compatible broker in Rust) for doorbuster's Kafka tests
# into a cache folder that is reused when present. The first build takes about 15 minutes.
#
#   scripts/install-tansu.sh        # prints the binary's path
#
# The cache folder is $DOORBUSTER_CACHE (default ~/.cache/doorbuster); the binary ends up in
# $DOORBUSTER_CACHE/tansu-0.6.0/bin/tansu.
set -euo pipefail

version=0.6.0
cache="${DOORBUSTER_CACHE:-$HOME/.cache/doorbuster}"
root="$cache/tansu-$version"
bin="$root/bin/tansu"

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$root"
echo "installing tansu $version into $root (about 15 minutes the first time)" >&2
# Its own target dir, so a project build in parallel does not fight it for the lock.
CARGO_TARGET_DIR="$cache/tansu-build" \
    cargo install tansu --locked --version "$version" --features dynostore --root "$root" >&2
rm -rf "$cache/tansu-build"
echo "$bin"
