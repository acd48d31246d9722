#!/usr/bin/env bash
# demo.sh DIR: the whole story, for `make demo`. Brings up a private dockerd and registry
# (integration/testenv.sh), runs pullguard in enforce mode with an example policy, pulls one
# allowed and one disallowed image, shows the disallowed one removed and the journal entry an
# SRE would query, then stops everything it started.
set -euo pipefail

dir=${1:-/tmp/pullguard-demo}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=$root/bin/pullguard

if [ "$(id -u)" != 0 ]; then
	echo "make demo starts a private dockerd and registry and needs root: sudo make demo" >&2
	exit 1
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

"$here/testenv.sh" install
"$here/testenv.sh" down "$dir" >/dev/null 2>&1 || true
pg_pid=''
tail_pid=''
cleanup() {
	if [ -n "$tail_pid" ]; then kill "$tail_pid" 2>/dev/null || true; fi
	if [ -n "$pg_pid" ]; then
		kill "$pg_pid" 2>/dev/null || true
		wait "$pg_pid" 2>/dev/null || true
	fi
	"$here/testenv.sh" down "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
started=$(date +%s)
step "Starting a private containerd, dockerd, registry and journald under $dir"
"$here/testenv.sh" up "$dir"
"$here/testenv.sh" seed "$dir"
# shellcheck source=/dev/null
. "$dir/env"

step "The policy: only images from the approved repository, never :latest"
mkdir -p "$dir/etc"
cat >"$dir/etc/policy.yaml" <<POLICY
mode: enforce
allow:
  - image: $REGISTRY/approved/**
    reason: vetted and copied by the platform team
deny:
  - image: "**"
    tags: [latest]
POLICY
chmod 600 "$dir/etc/policy.yaml"
cat "$dir/etc/policy.yaml"

step "Starting pullguard (enforce mode); its journal entries follow as they happen"
"$bin" daemon --policy "$dir/etc/policy.yaml" --docker-host "$DOCKER_HOST" \
	--containerd-address none --log-target journald --state-dir "$dir/state" &
pg_pid=$!
journalctl -f -n 50 -o cat "_PID=$pg_pid" | sed -u 's/^/  pullguard | /' &
tail_pid=$!
for _ in $(seq 100); do
	journalctl -q -o cat "_PID=$pg_pid" MESSAGE_ID=86b70b17b49b40deaa40068acfd22c57 | grep -q . && break
	sleep 0.1
done

step "docker pull $REGISTRY/approved/busybox:1.0   (allowed)"
docker pull -q "$REGISTRY/approved/busybox:1.0"
step "docker pull $REGISTRY/evil/miner:1.0   (not allowed)"
docker pull -q "$REGISTRY/evil/miner:1.0"
for _ in $(seq 100); do
	docker image inspect "$REGISTRY/evil/miner:1.0" >/dev/null 2>&1 || break
	sleep 0.1
done
sleep 0.5

step "docker images: the disallowed image is gone, the allowed one is untouched"
docker images

step "What an SRE queries: journalctl PULLGUARD_ACTION=removed PULLGUARD_RUNTIME=docker -o verbose"
journalctl --no-pager -o verbose "_PID=$pg_pid" PULLGUARD_ACTION=removed |
	grep -E '^\s+(MESSAGE|MESSAGE_ID|PRIORITY|PULLGUARD_[A-Z_]+)=' || true

step "pullguard check explains any reference the same way"
"$bin" check --policy "$dir/etc/policy.yaml" "$REGISTRY/approved/busybox:1.0" \
	"$REGISTRY/evil/miner:1.0" "$REGISTRY/approved/busybox" || true

printf '\nDemo done in %ss; stopping everything it started.\n' "$(($(date +%s) - started))"
