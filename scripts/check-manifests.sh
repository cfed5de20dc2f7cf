#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against the Kubernetes API's own schemas, strictly (an
# unknown or misspelt field fails), with a sample RUN_ID and START_AT filled in.
#
#   scripts/check-manifests.sh [KUBERNETES_VERSION]     (default 1.33.0)
#
# Uses kubernetes-validate (PyPI; installed with pip when missing), which carries the
# OpenAPI schemas of each Kubernetes release: no cluster is needed. With a cluster at hand,
# `kubectl apply --dry-run=server -f` checks more (admission, quotas).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-1.33.0}
command -v kubernetes-validate >/dev/null || pip install --quiet kubernetes-validate
command -v envsubst >/dev/null || apt-get install -y -qq gettext-base
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export RUN_ID=bf-2026-12-07 START_AT=2026-12-07T06:00:00Z
for manifest in deploy/kubernetes/*.yaml; do
    envsubst '$RUN_ID $START_AT' <"$manifest" >"$tmp/$(basename "$manifest")"
    kubernetes-validate --kubernetes-version "$version" --strict "$tmp/$(basename "$manifest")"
done
