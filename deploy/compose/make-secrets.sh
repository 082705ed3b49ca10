#!/bin/sh
# Creates the secrets deploy/compose.yaml mounts, once: the HS256 secret the agent runtime signs session
# registrations with, the runtime's API token, and the fleet's Redis password. Random, 32 bytes each, never overwritten.
# Compose bind-mounts file secrets as they are on the host, so each is made readable by dnswarden's uid 10053
# (deploy/container/Dockerfile) and nobody else: mode 0600, owner 10053:10053 (the Redis password 0640, group
# 999: the redis service's user reads it too). Hence run it as root (sudo);
# read them afterwards with sudo too. An existing secret with a looser mode or another owner is tightened.
set -eu
uid=10053
gid=10053
redis_gid=999 # the redis service's user in deploy/compose.yaml
dir=$(dirname "$0")/secrets
if [ "$(id -u)" != 0 ]; then
  echo "make-secrets.sh: run as root (sudo sh $0): the secrets must belong to dnswarden's uid $uid, mode 0600" >&2
  exit 1
fi
umask 077 # nothing is ever world-readable, not even for an instant
mkdir -p "$dir"
chmod 0700 "$dir"
for name in runtime-hs256 runtime-token redis-password; do
  file=$dir/$name
  if [ -s "$file" ]; then
    echo "keeping $file"
  else
    tmp=$(mktemp "$dir/.$name.XXXXXX")
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
    mv "$tmp" "$file"
    echo "created $file"
  fi
  if [ "$name" = redis-password ]; then
    # The Redis container (user 999:999) reads it too: group 999, readable by that group, nobody else.
    chown "$uid:$redis_gid" "$file"
    chmod 0640 "$file"
  else
    chown "$uid:$gid" "$file"
    chmod 0600 "$file"
  fi
done
