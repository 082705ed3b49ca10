#!/usr/bin/env bash
# dnswarden-confine — confine an agent's DNS to dnswarden with nftables (IPv4 and IPv6 in one table).
#
# Allows UDP/TCP 53 only to dnswarden's address(es); logs (rate-limited, with a prefix) and drops every other
# port-53 packet and all UDP/TCP 853 (DNS over TLS / DNS over QUIC); rejects everything else sent to dnswarden's
# address(es), so an agent never reaches its admin API. Touches nothing but its own table, so the
# rest of the egress policy (other tables, iptables-nft, Docker/Kubernetes rules) keeps deciding everything else.
# Idempotent: `apply` replaces the table atomically in one nft transaction; `remove` deletes it if present.
# Why nftables and not iptables: see README.md beside this file.
set -euo pipefail

readonly PROG=${0##*/}

usage() {
  cat <<EOF
Usage: $PROG ACTION SCOPE --dnswarden ADDR [--dnswarden ADDR ...] [options]

ACTION
  apply          install (or atomically replace) the rules
  remove         delete the rules (no error if they are not there)
  status         print the rules with their counters; exit 1 if not applied
  render         print the nft ruleset that apply would load, change nothing

SCOPE (exactly one)
  --netns NAME   the agent's named network namespace (ip netns); rules on its egress (output hook)
  --pid PID      the network namespace of process PID (e.g. a container's init, from
                 'docker inspect -f {{.State.Pid}} CONTAINER'); rules on its egress (output hook)
  --self         the network namespace this script runs in (e.g. a sidecar sharing the agent's namespace)
  --iface IFACE  host side: packets arriving from IFACE (a container veth or bridge; nft wildcard such
                 as 'veth*' allowed), filtered in the forward and input hooks

OPTIONS
  --dnswarden ADDR   dnswarden's IPv4 or IPv6 address (repeatable, or comma-separated); required for apply/render
  --table NAME       nft table name (default: dnswarden_confine, or dnswarden_confine_<iface> with --iface)
  --log-prefix TEXT  kernel log prefix for dropped packets (default: "dnswarden-drop: ")
  --log-rate RATE    log at most RATE packets (default: 10/second); drops themselves are never limited
  --no-log           drop without logging
  -h, --help         this text

Logging from inside a network namespace other than the host's needs the host sysctl
net.netfilter.nf_log_all_netns=1; the drop counters ('status') work regardless.
EOF
}

die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 2
}

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
action=$1
shift
case $action in
  apply | remove | status | render) ;;
  -h | --help) usage; exit 0 ;;
  *) die "unknown action '$action' (apply, remove, status, render)" ;;
esac

scope='' netns='' pid='' iface='' table='' log_prefix='dnswarden-drop: ' log_rate='10/second' log=1
v4=() v6=()

set_scope() {
  [[ -z $scope ]] || die "give exactly one of --netns, --pid, --self, --iface"
  scope=$1
}

add_address() {
  local addr
  IFS=',' read -r -a parts <<<"$1"
  for addr in "${parts[@]}"; do
    addr=${addr// /}
    [[ -n $addr ]] || continue
    if [[ $addr =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
      local octet
      for octet in "${BASH_REMATCH[@]:1}"; do
        ((10#$octet <= 255)) || die "not an IPv4 address: $addr"
      done
      v4+=("$addr")
    elif [[ $addr =~ ^[0-9A-Fa-f:.]+$ && $addr == *:* ]]; then
      v6+=("$addr")
    else
      die "--dnswarden wants a literal IPv4 or IPv6 address, got '$addr'"
    fi
  done
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --netns) [[ $# -ge 2 ]] || die "--netns needs a name"; set_scope netns; netns=$2; shift 2 ;;
    --pid) [[ $# -ge 2 ]] || die "--pid needs a process id"; set_scope pid; pid=$2; shift 2 ;;
    --self) set_scope self; shift ;;
    --iface) [[ $# -ge 2 ]] || die "--iface needs an interface name"; set_scope iface; iface=$2; shift 2 ;;
    --dnswarden) [[ $# -ge 2 ]] || die "--dnswarden needs an address"; add_address "$2"; shift 2 ;;
    --table) [[ $# -ge 2 ]] || die "--table needs a name"; table=$2; shift 2 ;;
    --log-prefix) [[ $# -ge 2 ]] || die "--log-prefix needs text"; log_prefix=$2; shift 2 ;;
    --log-rate) [[ $# -ge 2 ]] || die "--log-rate needs a rate such as 10/second"; log_rate=$2; shift 2 ;;
    --no-log) log=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ -n $scope ]] || die "give one of --netns NAME, --pid PID, --self, --iface IFACE"
[[ $scope != pid || $pid =~ ^[0-9]+$ ]] || die "--pid wants a number, got '$pid'"
[[ $scope != iface || $iface =~ ^[A-Za-z0-9_.@:*-]{1,15}$ ]] || die "--iface wants an interface name (at most 15 characters), got '$iface'"
[[ ! $log_prefix =~ [\"\\] ]] || die "--log-prefix may not contain quotes or backslashes"
((${#log_prefix} <= 127)) || die "--log-prefix is longer than the kernel's 127 characters"
[[ $log_rate =~ ^[0-9]+/(second|minute|hour)$ ]] || die "--log-rate wants N/second, N/minute or N/hour, got '$log_rate'"
if [[ -z $table ]]; then
  table=dnswarden_confine
  [[ $scope != iface ]] || table="dnswarden_confine_${iface//[^A-Za-z0-9_]/_}"
fi
[[ $table =~ ^[A-Za-z][A-Za-z0-9_]{0,62}$ ]] || die "--table wants letters, digits and _, got '$table'"
if [[ $action == apply || $action == render ]]; then
  ((${#v4[@]} + ${#v6[@]} > 0)) || die "--dnswarden ADDR is required: the address agents may send DNS to"
fi

# Runs nft in the target network namespace.
nft_in_scope() {
  case $scope in
    netns) ip netns exec "$netns" nft "$@" ;;
    pid) nsenter --target "$pid" --net -- nft "$@" ;;
    self | iface) nft "$@" ;;
  esac
}

join_elements() {
  local IFS=','
  printf '%s' "$*"
}

# The ruleset; the first two lines make apply idempotent and atomic: create the table if missing, delete it
# with everything in it, and define it anew — nft -f runs the whole file as one transaction.
render_ruleset() {
  local rules
  rules=$(
    printf '\t\tmeta l4proto { tcp, udp } th dport 53 ip daddr @dnswarden_v4 counter accept comment "dns to dnswarden (IPv4)"\n'
    printf '\t\tmeta l4proto { tcp, udp } th dport 53 ip6 daddr @dnswarden_v6 counter accept comment "dns to dnswarden (IPv6)"\n'
    if ((log)); then
      printf '\t\tmeta l4proto { tcp, udp } th dport { 53, 853 } limit rate %s burst 20 packets log prefix "%s" level warn\n' "$log_rate" "$log_prefix"
    fi
    printf '\t\tmeta l4proto { tcp, udp } th dport { 53, 853 } counter drop comment "dns or dot that bypasses dnswarden"\n'
    # dnswarden itself only on its DNS port: never its admin API (sessions, quarantines, the deny list) or anything else.
    printf '\t\tip daddr @dnswarden_v4 counter reject comment "dnswarden, not its dns port"\n'
    printf '\t\tip6 daddr @dnswarden_v6 counter reject comment "dnswarden, not its dns port"\n'
  )
  printf 'table inet %s\n' "$table"
  printf 'delete table inet %s\n' "$table"
  printf 'table inet %s {\n' "$table"
  printf '\tset dnswarden_v4 {\n\t\ttype ipv4_addr\n'
  ((${#v4[@]} == 0)) || printf '\t\telements = { %s }\n' "$(join_elements "${v4[@]}")"
  printf '\t}\n'
  printf '\tset dnswarden_v6 {\n\t\ttype ipv6_addr\n'
  ((${#v6[@]} == 0)) || printf '\t\telements = { %s }\n' "$(join_elements "${v6[@]}")"
  printf '\t}\n'
  if [[ $scope == iface ]]; then
    printf '\tchain confine {\n%s\n\t}\n' "$rules"
    printf '\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n'
    printf '\t\tiifname "%s" jump confine\n\t}\n' "$iface"
    printf '\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n'
    printf '\t\tiifname "%s" jump confine\n\t}\n' "$iface"
  else
    printf '\tchain egress {\n\t\ttype filter hook output priority filter; policy accept;\n'
    # Loopback never leaves the namespace; a local forwarder's own upstream traffic is judged when it leaves.
    printf '\t\toifname "lo" accept comment "loopback stays inside the namespace"\n'
    printf '%s\n\t}\n' "$rules"
  fi
  printf '}\n'
}

case $action in
  render)
    render_ruleset
    ;;
  apply)
    render_ruleset | nft_in_scope -f -
    echo "$PROG: applied table inet $table ($scope${netns:+ $netns}${pid:+ $pid}${iface:+ $iface}); dns allowed only to: ${v4[*]}${v4[*]:+${v6[*]:+ }}${v6[*]}"
    ;;
  remove)
    printf 'table inet %s\ndelete table inet %s\n' "$table" "$table" | nft_in_scope -f -
    echo "$PROG: removed table inet $table ($scope${netns:+ $netns}${pid:+ $pid}${iface:+ $iface})"
    ;;
  status)
    if ! nft_in_scope list table inet "$table" 2>/dev/null; then
      echo "$PROG: table inet $table is not applied ($scope${netns:+ $netns}${pid:+ $pid}${iface:+ $iface})" >&2
      exit 1
    fi
    ;;
esac
