#!/usr/bin/env bash
# Static checks of deploy/ (issue 5), called by .ci/run after `npm ci`. Works on a fresh Debian 12 with only the
# Debian archive and the npm registry reachable: the Kubernetes schemas come from the npm devDependency
# kubernetes-models, the Compose schema from Debian's docker-compose; nothing is downloaded at check time.
# Needs root (apt-get; nft's check mode runs in a throwaway network namespace). Exit 0 only if every check passes;
# each check prints one "ok"/"FAIL" line, and all checks run even after a failure.
# The runtime proof (real namespaces, dnswarden, a rogue resolver) is test/netns/containment.test.ts, run by npm test.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export DEBIAN_FRONTEND=noninteractive

# --- tools (no recommends: docker-compose would otherwise pull in the docker.io daemon)
APT_PACKAGES=(shellcheck docker-compose nftables iproute2 util-linux)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  echo "deploy-checks: apt-get install ${missing[*]}"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null; }; then
    echo "deploy-checks: FAIL could not install ${missing[*]}" >&2
    exit 1
  fi
fi
[[ -d node_modules/kubernetes-models ]] || { echo "deploy-checks: FAIL node_modules/kubernetes-models missing (run npm ci first)" >&2; exit 1; }

failures=0
pass() { printf 'deploy-checks: ok    %s\n' "$1"; }
fail() { printf 'deploy-checks: FAIL  %s\n' "$1" >&2; failures=$((failures + 1)); }
# check NAME CMD...: runs CMD, shows its output only when it fails.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; printf '%s\n' "$out" | sed 's/^/    /' >&2; fi
}

SCRIPT=deploy/iptables/dnswarden-confine.sh
mapfile -t SHELL_SCRIPTS < <(find deploy .ci/deploy-checks.sh -name '*.sh' -type f | sort)

# --- shell scripts
check "shellcheck ${SHELL_SCRIPTS[*]}" shellcheck -x "${SHELL_SCRIPTS[@]}"

# --- nftables: the rendered rulesets load (nft -c), and apply/status/remove behave, in a throwaway namespace
probe_ns="dwcheck$$"
cleanup() { ip netns del "$probe_ns" 2>/dev/null || true; }
trap cleanup EXIT
if ip netns add "$probe_ns" 2>/dev/null; then
  for scope in "--netns $probe_ns" "--self" "--iface 'veth*'" "--pid $$"; do
    # shellcheck disable=SC2086 # scope is two words on purpose
    check "nft -c accepts: $SCRIPT render $scope (v4 + v6)" \
      bash -c "$SCRIPT render $scope --dnswarden 10.89.53.53,fd00:89:53::53 | ip netns exec $probe_ns nft -c -f -"
  done
  nft_behaviour() {
    local out
    "$SCRIPT" status --netns "$probe_ns" >/dev/null 2>&1 && { echo "status before apply: expected exit 1"; return 1; }
    "$SCRIPT" apply --netns "$probe_ns" --dnswarden 10.0.0.1 >/dev/null || return 1
    "$SCRIPT" apply --netns "$probe_ns" --dnswarden 10.0.0.2 >/dev/null || { echo "second apply failed"; return 1; }
    out=$(ip netns exec "$probe_ns" nft list ruleset)
    [[ $(grep -c '^table inet dnswarden_confine' <<<"$out") == 1 ]] || { echo "expected exactly one table after two applies:"; echo "$out"; return 1; }
    [[ $(grep -cE 'counter packets [0-9]+ bytes [0-9]+ drop' <<<"$out") == 1 ]] || { echo "expected exactly one drop rule after two applies:"; echo "$out"; return 1; }
    grep -q 'elements = { 10.0.0.2 }' <<<"$out" || { echo "the second apply did not replace the address:"; echo "$out"; return 1; }
    "$SCRIPT" status --netns "$probe_ns" >/dev/null || { echo "status after apply: expected exit 0"; return 1; }
    "$SCRIPT" remove --netns "$probe_ns" >/dev/null || { echo "remove failed"; return 1; }
    "$SCRIPT" remove --netns "$probe_ns" >/dev/null || { echo "a second remove failed: not idempotent"; return 1; }
    [[ -z $(ip netns exec "$probe_ns" nft list ruleset) ]] || { echo "rules left after remove"; return 1; }
    local rc
    rc=0; "$SCRIPT" apply --netns "$probe_ns" >/dev/null 2>&1 || rc=$?
    [[ $rc == 2 ]] || { echo "apply without --dnswarden: expected exit 2, got $rc"; return 1; }
    rc=0; "$SCRIPT" apply --netns "$probe_ns" --dnswarden 300.1.1.1 >/dev/null 2>&1 || rc=$?
    [[ $rc == 2 ]] || { echo "bad address: expected exit 2, got $rc"; return 1; }
    rc=0; "$SCRIPT" apply --self --iface eth0 --dnswarden 10.0.0.1 >/dev/null 2>&1 || rc=$?
    [[ $rc == 2 ]] || { echo "two scopes: expected exit 2, got $rc"; return 1; }
    return 0
  }
  check "$SCRIPT: apply is idempotent, status/remove exit codes, bad arguments rejected" nft_behaviour
else
  fail "ip netns add: this machine cannot create network namespaces (needed for the nft checks and test/netns)"
fi

# --- resolv.conf: the compose example is the template rendered for its dnswarden address
resolv_matches() {
  diff <(sed 's/@DNSWARDEN_ADDR@/10.89.53.53/' deploy/iptables/resolv.conf.template | grep -v '^#') \
    <(grep -v '^#' deploy/compose/agent-resolv.conf)
}
check "deploy/compose/agent-resolv.conf = resolv.conf.template rendered for 10.89.53.53" resolv_matches

# --- Dockerfiles
check "Dockerfiles: COPY sources exist and pass their .dockerignore; non-root USER; HEALTHCHECK; pinned bases" \
  node deploy/tools/check-dockerfiles.mjs

# --- compose: Debian's docker-compose validates the file against the Compose schema, offline (no daemon)
compose_valid() {
  local f
  docker-compose -f deploy/compose.yaml config -q || return 1
  for f in deploy/compose/dnswarden.yaml deploy/compose/agent-resolv.conf deploy/container/confine.Dockerfile deploy/container/Dockerfile; do
    [[ -f $f ]] || { echo "compose.yaml refers to $f, which is missing"; return 1; }
  done
}
check "deploy/compose.yaml: Compose schema (docker-compose config) and referenced files" compose_valid

# --- Kubernetes: strict schema validation, and the validator rejects known-bad manifests
check "deploy/kubernetes: Kubernetes API schemas, unknown fields, cross-references" \
  node deploy/tools/validate-k8s.mjs deploy/kubernetes
rejects() {
  local expect out
  expect=$(sed -n '1s/^# expect: //p' "$1")
  [[ -n $expect ]] || { echo "$1: first line must be '# expect: TEXT'"; return 1; }
  if out=$(node deploy/tools/validate-k8s.mjs "$1" 2>&1); then echo "accepted a bad manifest:"; echo "$out"; return 1; fi
  grep -qF -- "$expect" <<<"$out" || { echo "rejected, but without '$expect':"; echo "$out"; return 1; }
}
for bad in deploy/tools/testdata/*.yaml; do
  check "validate-k8s rejects $bad" rejects "$bad"
done

# --- dnswarden configs shipped in deploy/ are valid for the dnswarden they deploy
configs_valid() {
  local tmp rc=0
  if [[ ! -f dist/src/cli.js ]]; then npm run --silent build >/dev/null || { echo "npm run build failed"; return 1; }; fi
  tmp=$(mktemp -d)
  node --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    import { parseAllDocuments } from "yaml";
    for (const doc of parseAllDocuments(readFileSync("deploy/kubernetes/10-configmap.yaml", "utf8"))) {
      const cm = doc.toJS();
      if (cm?.kind === "ConfigMap") writeFileSync(process.argv[1] + "/configmap-config.yaml", cm.data["config.yaml"]);
    }' "$tmp" || return 1
  # check-config reads the secret files a config names, as serve does: stand-ins (distinct, long enough) take
  # the place of the mounted secrets, under $tmp instead of /run/secrets.
  local f secret checked
  for f in deploy/container/config.yaml deploy/compose/dnswarden.yaml "$tmp/configmap-config.yaml"; do
    checked="$tmp/checked-$(basename "$f")"
    sed "s#/run/secrets/#$tmp/run-secrets/#g" "$f" >"$checked"
    while read -r secret; do
      mkdir -p "$(dirname "$secret")"
      printf 'stand-in-for-%s-0123456789abcdef0123456789\n' "$(basename "$secret")" >"$secret"
    done < <(grep -oE "$tmp/run-secrets/[A-Za-z0-9/_.-]+" "$checked" | sort -u)
    node dist/src/cli.js check-config "$checked" || { echo "  (that is $f)"; rc=1; }
  done
  rm -rf "$tmp"
  return "$rc"
}
check "dnswarden check-config: image default, compose, Kubernetes ConfigMap" configs_valid

if ((failures > 0)); then
  echo "deploy-checks: $failures check(s) failed" >&2
  exit 1
fi
echo "deploy-checks: all checks passed"
