#!/usr/bin/env bash
# Entrypoint of the confinement sidecar (confine.Dockerfile): apply the rules in this container's own network
# namespace — which the agent shares — and stay up so the namespace and its rules outlive any agent restart.
# A failed apply exits non-zero, so the agent (depends_on: condition: service_healthy) never starts unconfined.
set -euo pipefail
/usr/local/sbin/dnswarden-confine.sh apply --self "$@"
trap 'exit 0' TERM INT
sleep infinity &
wait "$!"
