#!/usr/bin/env bash
# Observability checks: `promtool check rules` on deploy/prometheus/alerts.yml. (`promtool check metrics`
# on a live server's /metrics and `promtool test rules` run in test/integration/observability.test.ts,
# which needs the promtool this script installs.)
# promtool comes from the Debian package `prometheus`; it is installed here when missing, with no
# daemon left running (policy-rc.d forbids starts during the install; anything the install still
# started is stopped by PID, never by name). Idempotent; run as root on Debian 12 (.ci/run calls it).
# Exit 0 when the rules are valid, non-zero with promtool's message when not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

RULES=deploy/prometheus/alerts.yml
# The pidfile Debian's sysvinit script for prometheus writes, should something start it anyway.
DAEMON_PIDFILES=(/run/prometheus/prometheus.pid /var/run/prometheus/prometheus.pid /run/prometheus.pid)

log() { printf '\n=== %s ===\n' "$*"; }

# PIDs of running prometheus processes, one per line (empty when none).
daemon_pids() {
  local pid comm
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    comm="$(cat "$dir/comm" 2>/dev/null || true)"
    case "$comm" in prometheus) echo "$pid" ;; esac
  done
}

if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "promtool is missing and installing the Debian package 'prometheus' needs root" >&2
    exit 1
  fi
  log "apt-get install prometheus (for promtool)"
  mapfile -t BEFORE < <(daemon_pids)
  # policy-rc.d exit 101 = "action forbidden": invoke-rc.d starts no daemon during the install.
  # Only ours if none existed; removed again on exit.
  POLICY_RC=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    trap 'rm -f "$POLICY_RC"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus </dev/null
  if [ -e "$POLICY_RC" ] && grep -qx 'exit 101' "$POLICY_RC" && [ "$(wc -l <"$POLICY_RC")" -eq 2 ]; then
    rm -f "$POLICY_RC"
    trap - EXIT
  fi
  # Should a postinst have started the daemon anyway, stop it by PID: only processes that were
  # not running before the install.
  mapfile -t AFTER < <(daemon_pids)
  for pid in "${AFTER[@]}"; do
    case " ${BEFORE[*]-} " in *" $pid "*) continue ;; esac
    echo "stopping daemon started by the install: pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'))"
    kill "$pid" 2>/dev/null || true
  done
  for pidfile in "${DAEMON_PIDFILES[@]}"; do
    [ -s "$pidfile" ] || continue
    pid="$(tr -dc '0-9' <"$pidfile")"
    [ -n "$pid" ] || continue
    case " ${BEFORE[*]-} " in *" $pid "*) continue ;; esac
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = prometheus ]; then
      echo "stopping daemon from $pidfile: pid $pid"
      kill "$pid" 2>/dev/null || true
    fi
  done
fi

command -v promtool >/dev/null || { echo "missing after install: promtool" >&2; exit 1; }

log "promtool check rules $RULES ($(promtool --version 2>&1 | head -n 1))"
promtool check rules "$RULES"
