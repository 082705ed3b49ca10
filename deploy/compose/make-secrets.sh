#!/bin/sh
# Creates the secrets deploy/compose.yaml mounts, once: the HS256 secret the agent runtime signs session
# registrations with, the runtime's API token, and the fleet's Redis password. Random, 32 bytes each, never overwritten.
# They must be readable by dnswarden's uid 10053 inside the container (compose bind-mounts file secrets as-is).
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
for name in runtime-hs256 runtime-token redis-password; do
  if [ -s "$dir/$name" ]; then
    echo "keeping $dir/$name"
    continue
  fi
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/$name"
  chmod 0644 "$dir/$name"
  echo "created $dir/$name"
done
