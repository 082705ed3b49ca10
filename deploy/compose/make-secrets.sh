#!/bin/sh
# Creates the two secrets deploy/compose.yaml mounts, once: the HS256 secret the agent runtime signs session
# registrations with, and the runtime's API token. Random, 32 bytes each, never overwritten.
# Compose bind-mounts file secrets as they are on the host, so each is made readable by dnswarden's uid 10053
# (deploy/container/Dockerfile) and nobody else: mode 0600, owner 10053:10053. Hence run it as root (sudo);
# read them afterwards with sudo too. An existing secret with a looser mode or another owner is tightened.
set -eu
uid=10053
gid=10053
dir=$(dirname "$0")/secrets
if [ "$(id -u)" != 0 ]; then
  echo "make-secrets.sh: run as root (sudo sh $0): the secrets must belong to dnswarden's uid $uid, mode 0600" >&2
  exit 1
fi
umask 077 # nothing is ever world-readable, not even for an instant
mkdir -p "$dir"
chmod 0700 "$dir"
for name in runtime-hs256 runtime-token; do
  file=$dir/$name
  if [ -s "$file" ]; then
    echo "keeping $file"
  else
    tmp=$(mktemp "$dir/.$name.XXXXXX")
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
    mv "$tmp" "$file"
    echo "created $file"
  fi
  chown "$uid:$gid" "$file"
  chmod 0600 "$file"
done
