#!/usr/bin/env bash
# testenv.sh: a real, private container-runtime environment for pullguard's integration tests.
#
#   testenv.sh install    (root) install the Debian packages below that are missing
#   testenv.sh up DIR     (root) start containerd, dockerd, a registry and, if none runs, journald
#   testenv.sh seed DIR   build a tiny busybox image from nothing, push it under the test names,
#                         then remove the local copies so dockerd starts with an empty image store
#   testenv.sh down DIR   stop what `up` started, unmount what is left under DIR; safe to repeat
#   testenv.sh restart-dockerd DIR  (root) start the environment's dockerd again, same flags
#   testenv.sh restart-containerd DIR  (root) kill -9 the environment's containerd, start it again
#
# Everything `up` starts lives under DIR (sockets, state, logs), so several environments can run
# side by side and the host's /var/lib/docker, /run/docker.sock, /etc/docker etc. are not used.
# Outside DIR are only journald and the shim sockets containerd 1.6 always puts in
# /run/containerd/s. journald is a host singleton: `up` reuses a running one; `down` stops it
# only if this environment started it and no other environment is up (then it keeps running).
# DIR is kept by `down` (logs stay readable); remove it yourself afterwards.
#
# `seed` pushes one busybox image as approved/busybox:{1.0,1.1,latest}, myorg-base:1.0,
# myorg/base:1.0 and library/nginx:1.25, and a second image (one extra file, so another ID) as
# evil/miner:{latest,1.0}, all under $REGISTRY/.
#
# DIR/env is sourceable (`. DIR/env`) and defines:
#   PGENV_DIR                  DIR itself
#   DOCKER_HOST                unix://DIR/run/docker.sock, the private dockerd
#   DOCKER_CONFIG              DIR/docker/client, so the host's ~/.docker is not read or written
#   DOCKER_CONTAINERD_NAMESPACE containerd namespace of dockerd's containers (moby)
#   CONTAINERD_ADDRESS         DIR/run/containerd.sock, the private containerd (read by ctr too)
#   REGISTRY                   127.0.0.1:PORT, a plain-HTTP registry (docker and ctr --plain-http)
#   CONTAINERD_PID_FILE, DOCKERD_PID_FILE, REGISTRY_PID_FILE
#   JOURNALD_STARTED           1 if this environment started systemd-journald (see above),
#                              0 if it reused one that was already running (host singleton)
#   JOURNALD_PID_FILE          pid file of that journald (only when JOURNALD_STARTED=1)
#   PGENV_LOG_DIR              DIR/logs, one log per component
#
# Logs: DIR/logs/{containerd,dockerd,registry,journald}.log
set -euo pipefail

# apparmor: where the kernel enables AppArmor, dockerd needs apparmor_parser to start containers.
readonly PACKAGES=(containerd runc docker.io docker-registry busybox-static skopeo systemd apparmor)
readonly JOURNALD=/lib/systemd/systemd-journald
readonly SEED_REFS_BUSYBOX=(approved/busybox:1.0 approved/busybox:1.1 approved/busybox:latest
	myorg-base:1.0 myorg/base:1.0 library/nginx:1.25)
readonly SEED_REFS_MINER=(evil/miner:latest evil/miner:1.0)

log() { printf 'testenv: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

usage() {
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

need_root() { ((EUID == 0)) || die "$1 must run as root"; }

# ---------------------------------------------------------------------------------------- install

cmd_install() {
	need_root install
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		log "all packages installed"
		return
	fi
	log "installing: ${missing[*]}"
	# A package's postinst would start the host's own docker/containerd/registry services. Deny
	# that for the duration of the install unless a policy is already in place (as in images).
	local policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ------------------------------------------------------------------------------------- processes

# pid_of PIDFILE PATTERN: the pid in PIDFILE if that process is alive (not a zombie) and its
# command line contains PATTERN; guards against stale pid files and reused pids.
pid_of() {
	local pid state
	[[ -r $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ ${state%% *} != Z ]] || return 1
	[[ $(cmdline "$pid") == *"$2"* ]]
}

cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline"; }

# start NAME PIDFILE CMD...: run CMD detached (own session, so a Ctrl-C aimed at the caller does
# not reach it) with all output in DIR/logs/NAME.log.
start() {
	local name=$1 pidfile=$2
	shift 2
	setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo "$!" >"$pidfile"
}

# wait_ready NAME PIDFILE PATTERN SECONDS CMD...: poll CMD until it succeeds; fail with the
# component's last log lines if it exits or the deadline passes.
wait_ready() {
	local name=$1 pidfile=$2 pattern=$3 secs=$4
	shift 4
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ! pid_of "$pidfile" "$pattern"; then
			component_failed "$name" "exited during start-up"
		fi
		if ((SECONDS >= deadline)); then
			component_failed "$name" "not ready after ${secs}s"
		fi
		sleep 0.1
	done
}

component_failed() {
	log "$1 $2; last lines of $LOGS/$1.log:"
	tail -n 25 "$LOGS/$1.log" >&2 || true
	exit 1
}

# stop NAME PIDFILE PATTERN: SIGTERM, then SIGKILL after 10s.
stop() {
	local pid i
	pid_of "$2" "$3" || return 0
	pid=$(<"$2")
	log "stopping $1 ($pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		pid_of "$2" "$3" || return 0
		sleep 0.1
	done
	log "$1 ignored SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# shims_of SOCKET: containerd shim processes serving the containerd at SOCKET.
shims_of() {
	local f pid
	for f in /proc/[0-9]*/comm; do
		[[ $(cat "$f" 2>/dev/null) == containerd-shim* ]] || continue
		pid=${f#/proc/}
		pid=${pid%/comm}
		[[ $(cmdline "$pid") == *"-address $1 "* ]] && echo "$pid"
	done
	return 0
}

# descendants PID: all transitive children of PID.
descendants() {
	local children child
	children=$(cat /proc/"$1"/task/*/children 2>/dev/null) || return 0
	for child in $children; do
		echo "$child"
		descendants "$child"
	done
}

# other_env_up: another environment's containerd (started by this script) is running.
other_env_up() {
	local f cmd
	for f in /proc/[0-9]*/cmdline; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
		if [[ $cmd == "containerd --config "*/containerd/config.toml* && $cmd != *"$CTRD_CONF"* ]]; then
			return 0
		fi
	done
	return 1
}

journald_running() {
	local f
	for f in /proc/[0-9]*/comm; do
		[[ $(cat "$f" 2>/dev/null) == systemd-journal ]] && return 0
	done
	return 1
}

# ---------------------------------------------------------------------------------------- up

set_paths() {
	[[ -n ${1:-} ]] || usage
	[[ $1 =~ ^[A-Za-z0-9_./+-]+$ ]] || die "DIR must be a plain path (no spaces or quotes): $1"
	[[ -d $1 ]] || die "no directory $1"
	DIR=$(cd "$1" && pwd -P)
	# Unix socket paths are limited to 107 bytes; dockerd and containerd nest sockets in DIR.
	((${#DIR} <= 60)) || die "DIR is too long for unix sockets (${#DIR} > 60 chars): $DIR"
	LOGS=$DIR/logs
	RUN=$DIR/run
	CTRD_SOCK=$RUN/containerd.sock
	DOCKER_SOCK=$RUN/docker.sock
	CTRD_CONF=$DIR/containerd/config.toml
	REG_CONF=$DIR/registry/config.yml
	# Docker's containers go into their own cgroup parent, so `down` can remove it again.
	CGROUP_PARENT=pgenv-$(printf '%s' "$DIR" | md5sum | cut -c1-12)
}

cmd_up() {
	need_root up
	[[ -n ${1:-} ]] || usage
	mkdir -p "$1"
	set_paths "$@"
	if pid_of "$RUN/containerd.pid" "$CTRD_CONF" || pid_of "$RUN/dockerd.pid" "$DOCKER_SOCK"; then
		die "an environment is already up in $DIR (run: $0 down $DIR)"
	fi
	local cmd
	for cmd in containerd ctr dockerd docker docker-registry runc journalctl systemd-cat; do
		command -v "$cmd" >/dev/null || die "$cmd not found; run: $0 install"
	done
	[[ -x $JOURNALD ]] || die "$JOURNALD not found; run: $0 install"
	mkdir -p "$LOGS" "$RUN" "$DIR/containerd" "$DIR/docker/client" "$DIR/registry/storage"
	# A failed start stops whatever did start, leaving the logs for reading.
	trap 'rc=$?; if ((rc != 0)); then log "up failed; stopping what was started"; cmd_down "$DIR" || true; fi' EXIT

	up_journald
	up_containerd
	up_registry
	up_dockerd
	write_env
	trap - EXIT
	log "up in $DIR (DOCKER_HOST=unix://$DOCKER_SOCK REGISTRY=$REGISTRY)"
}

up_journald() {
	JOURNALD_STARTED=0
	if ! journald_running; then
		mkdir -p /run/systemd/journal
		start journald "$RUN/journald.pid" "$JOURNALD"
		JOURNALD_STARTED=1
	fi
	local probe=pgenv-probe-$$-$RANDOM
	echo "$probe" | systemd-cat -t "$probe" 2>/dev/null || true
	local deadline=$((SECONDS + 10))
	until journalctl -q --no-pager -o cat -t "$probe" 2>/dev/null | grep -q "$probe"; do
		if ((JOURNALD_STARTED)) && ! pid_of "$RUN/journald.pid" "$JOURNALD"; then
			component_failed journald "exited during start-up"
		fi
		((SECONDS < deadline)) || component_failed journald "does not store entries after 10s"
		sleep 0.1
		echo "$probe" | systemd-cat -t "$probe" 2>/dev/null || true
	done
}

up_containerd() {
	# The CRI plugin would want CNI and its own namespace; pullguard needs only the plain API.
	# Every path is under DIR; opt's default is /opt/containerd on the host.
	cat >"$CTRD_CONF" <<-EOF
		version = 2
		root = "$DIR/containerd/root"
		state = "$DIR/containerd/state"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
		  "io.containerd.snapshotter.v1.devmapper"]
		[grpc]
		  address = "$CTRD_SOCK"
		[ttrpc]
		  address = "$RUN/containerd.ttrpc.sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$DIR/containerd/opt"
	EOF
	start containerd "$RUN/containerd.pid" containerd --config "$CTRD_CONF"
	wait_ready containerd "$RUN/containerd.pid" "$CTRD_CONF" 20 ctr --address "$CTRD_SOCK" version
}

up_registry() {
	# Port 0: the kernel picks a free port; we read it back from the listening socket.
	cat >"$REG_CONF" <<-EOF
		version: 0.1
		log:
		  level: info
		  accesslog:
		    disabled: true
		storage:
		  filesystem:
		    rootdirectory: $DIR/registry/storage
		  delete:
		    enabled: true
		http:
		  addr: 127.0.0.1:0
	EOF
	start registry "$RUN/registry.pid" docker-registry serve "$REG_CONF"
	local port=
	local deadline=$((SECONDS + 10))
	until port=$(listen_port "$(<"$RUN/registry.pid")") && registry_ok "$port"; do
		pid_of "$RUN/registry.pid" "$REG_CONF" || component_failed registry "exited during start-up"
		((SECONDS < deadline)) || component_failed registry "not answering /v2/ after 10s"
		sleep 0.1
	done
	REGISTRY=127.0.0.1:$port
}

# listen_port PID: the port of PID's listening TCP socket, from /proc/net/tcp by socket inode.
listen_port() {
	local fd link inodes=""
	for fd in /proc/"$1"/fd/*; do
		link=$(readlink "$fd" 2>/dev/null) || continue
		[[ $link == socket:* ]] && inodes+=" ${link//[^0-9]/}"
	done
	[[ -n $inodes ]] || return 1
	awk -v inodes="$inodes " '
		$4 == "0A" && index(inodes, " " $10 " ") { split($2, a, ":"); print a[2]; found = 1; exit }
		END { exit !found }' /proc/net/tcp | { read -r hex && echo $((16#$hex)); }
}

# registry_ok PORT: GET /v2/ answers 200 (bash's /dev/tcp: no curl needed on a bare machine).
registry_ok() (
	exec 3<>"/dev/tcp/127.0.0.1/$1"
	printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	read -r -t 2 _ status _ <&3
	[[ $status == 200 ]]
)

up_dockerd() {
	# Its own config file keeps dockerd from reading /etc/docker/daemon.json and, through
	# deprecated-key-path (a daemon.json key only, not a flag in 20.10), from writing
	# /etc/docker/key.json. No bridge and no iptables keep it off the host's network.
	printf '{"deprecated-key-path": "%s"}\n' "$DIR/docker/key.json" >"$DIR/docker/daemon.json"
	# dockerd writes --pidfile itself (and refuses to start if it names a live process), so
	# the launch is recorded separately for `down`.
	start dockerd "$RUN/dockerd-launch.pid" dockerd \
		--config-file "$DIR/docker/daemon.json" \
		-H "unix://$DOCKER_SOCK" \
		--data-root "$DIR/docker/data" \
		--exec-root "$DIR/docker/exec" \
		--pidfile "$RUN/dockerd.pid" \
		--containerd "$CTRD_SOCK" \
		--containerd-namespace moby \
		--containerd-plugins-namespace plugins.moby \
		--bridge=none --iptables=false --ip6tables=false --ip-masq=false \
		--storage-driver overlay2 \
		--cgroup-parent "/$CGROUP_PARENT" \
		--shutdown-timeout 2
	wait_ready dockerd "$RUN/dockerd-launch.pid" "$DOCKER_SOCK" 60 \
		env DOCKER_HOST="unix://$DOCKER_SOCK" DOCKER_CONFIG="$DIR/docker/client" docker version
}

write_env() {
	{
		echo "# written by testenv.sh up; load with: set -a; . $DIR/env; set +a"
		echo "export PGENV_DIR=$DIR"
		echo "export PGENV_LOG_DIR=$LOGS"
		echo "export DOCKER_HOST=unix://$DOCKER_SOCK"
		echo "export DOCKER_CONFIG=$DIR/docker/client"
		echo "export DOCKER_CONTAINERD_NAMESPACE=moby"
		echo "export CONTAINERD_ADDRESS=$CTRD_SOCK"
		echo "export REGISTRY=$REGISTRY"
		echo "export CONTAINERD_PID_FILE=$RUN/containerd.pid"
		echo "export DOCKERD_PID_FILE=$RUN/dockerd.pid"
		echo "export REGISTRY_PID_FILE=$RUN/registry.pid"
		echo "export JOURNALD_STARTED=$JOURNALD_STARTED"
		if ((JOURNALD_STARTED)); then
			echo "export JOURNALD_PID_FILE=$RUN/journald.pid"
		fi
	} >"$DIR/env.tmp"
	mv "$DIR/env.tmp" "$DIR/env"
}

# ---------------------------------------------------------------------------------------- seed

load_env() {
	set_paths "$@"
	[[ -r $DIR/env ]] || die "no environment in $DIR (run: $0 up $DIR)"
	# shellcheck source=/dev/null
	. "$DIR/env"
}

cmd_seed() {
	load_env "$@"
	# The image has no libc, so busybox must be the static build (package busybox-static).
	local busybox=/bin/busybox
	if [[ ! -x $busybox ]] || ldd "$busybox" >/dev/null 2>&1; then
		die "no static $busybox; run: $0 install"
	fi

	# One rootfs, two images: evil/miner carries an extra file so its image ID differs.
	local root=$DIR/seed/rootfs
	rm -rf "$DIR/seed"
	mkdir -p "$root/bin" "$root/etc" "$root/tmp"
	chmod 1777 "$root/tmp"
	cp "$busybox" "$root/bin/busybox"
	local applet
	for applet in sh sleep echo true cat ls; do
		ln -s busybox "$root/bin/$applet"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
	tar -C "$root" -cf "$DIR/seed/busybox.tar" .
	echo 'not really a miner' >"$root/miner.txt"
	tar -C "$root" -cf "$DIR/seed/miner.tar" .

	local base=pgenv-seed/busybox:base miner=pgenv-seed/miner:base
	docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' "$DIR/seed/busybox.tar" "$base" >/dev/null
	docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' "$DIR/seed/miner.tar" "$miner" >/dev/null

	local ref pushed=()
	for ref in "${SEED_REFS_BUSYBOX[@]}"; do
		docker tag "$base" "$REGISTRY/$ref"
		pushed+=("$REGISTRY/$ref")
	done
	for ref in "${SEED_REFS_MINER[@]}"; do
		docker tag "$miner" "$REGISTRY/$ref"
		pushed+=("$REGISTRY/$ref")
	done
	# One at a time: the registry's filesystem storage answers 500 when two pushes of the same
	# blob into one repository race (seen with concurrent pushes of approved/busybox tags).
	for ref in "${pushed[@]}"; do
		docker push -q "$ref" >/dev/null
	done

	# Tests start from an empty image store (this also drops leftovers of an earlier seed).
	local ids
	ids=$(docker image ls -aq | sort -u)
	# shellcheck disable=SC2086
	[[ -z $ids ]] || docker rmi -f $ids >/dev/null
	log "seeded $REGISTRY with ${#pushed[@]} references"
}

# ---------------------------------------------------------------------------------------- down

cmd_down() {
	need_root down
	if [[ -n ${1:-} && ! -e $1 ]]; then
		log "nothing to do: $1 does not exist"
		return 0
	fi
	set_paths "$@"
	local ns id pid

	# Kill all tasks through containerd first: dockerd then has nothing left to stop (its own
	# shutdown would wait out each container's stop timeout).
	if pid_of "$RUN/containerd.pid" "$CTRD_CONF"; then
		for ns in $(ctr --address "$CTRD_SOCK" namespaces ls -q 2>/dev/null); do
			for id in $(ctr --address "$CTRD_SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
				ctr --address "$CTRD_SOCK" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
			done
		done
	fi
	stop dockerd "$RUN/dockerd-launch.pid" "$DOCKER_SOCK"
	stop containerd "$RUN/containerd.pid" "$CTRD_CONF"
	stop registry "$RUN/registry.pid" "$REG_CONF"

	# If containerd died before deleting tasks, their containers and shims are still running.
	delete_leftover_containers
	for pid in $(shims_of "$CTRD_SOCK"); do
		log "killing leftover shim $pid and its processes"
		# shellcheck disable=SC2046
		kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
	done

	unmount_under "$DIR"
	remove_cgroup_parent

	# journald.pid exists only if this environment started journald. Other environments may be
	# using it (they reuse a running one), so it stays while any of them is up.
	if ! pid_of "$RUN/journald.pid" "$JOURNALD"; then
		:
	elif other_env_up; then
		log "leaving journald running: another environment is up"
	else
		stop journald "$RUN/journald.pid" "$JOURNALD"
	fi
	rm -f "$DIR/env"
	log "down in $DIR"
}

# delete_leftover_containers: containers whose task state containerd left in DIR, deleted with
# runc, which kills them and removes their cgroups and runc state. Docker gives runc a root in
# its exec-root; ctr leaves runc's default, /run/containerd/runc/NAMESPACE, on the host.
delete_leftover_containers() {
	local tasks=$DIR/containerd/state/io.containerd.runtime.v2.task task ns id root
	for task in "$tasks"/*/*/; do
		[[ -d $task ]] || continue
		task=${task%/}
		id=${task##*/}
		ns=${task%/*}
		ns=${ns##*/}
		for root in "$DIR/docker/exec/runtime-runc/$ns" "/run/containerd/runc/$ns"; do
			if [[ -e $root/$id ]]; then
				log "deleting leftover container $ns/$id"
				runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
			fi
		done
	done
}

# remove_cgroup_parent: Docker's cgroup parent of this environment, once its containers are gone.
remove_cgroup_parent() {
	local i dirs
	for ((i = 0; i < 20; i++)); do
		dirs=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name "$CGROUP_PARENT")
		[[ -n $dirs ]] || return 0
		# shellcheck disable=SC2086
		rmdir $dirs 2>/dev/null && return 0
		sleep 0.1
	done
	log "cgroups left behind: ${dirs//$'\n'/ }"
}

# unmount_under DIR: every mount below DIR, deepest first (overlay rootfs, netns, shm, binds).
unmount_under() {
	local target i
	for ((i = 0; i < 5; i++)); do
		local targets=()
		while read -r target; do
			targets+=("$target")
		done < <(awk -v dir="$1/" 'index($5, dir) == 1 { print length($5), $5 }' /proc/self/mountinfo |
			sort -rn | cut -d' ' -f2-)
		((${#targets[@]} > 0)) || return 0
		for target in "${targets[@]}"; do
			umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
		done
	done
	log "mounts still left under $1:"
	awk -v dir="$1/" 'index($5, dir) == 1 { print "  " $5 }' /proc/self/mountinfo >&2
	return 1
}

# ------------------------------------------------------------------------------ restart-dockerd

# cmd_restart_dockerd DIR: start the environment's dockerd again with the flags `up` gave it,
# stopping it first if it still runs. Tests kill dockerd (kill -9 "$DOCKERD_PID_FILE") to see
# that pullguard survives a runtime that vanishes, then bring it back with this.
cmd_restart_dockerd() {
	need_root restart-dockerd
	load_env "$@"
	pid_of "$RUN/containerd.pid" "$CTRD_CONF" || die "containerd of $DIR is not running"
	stop dockerd "$RUN/dockerd-launch.pid" "$DOCKER_SOCK"
	# dockerd refuses to start while its --pidfile names a process that still exists, and one
	# killed with SIGKILL takes a moment to go (and to be reaped).
	local pid i
	if [[ -r $RUN/dockerd.pid ]]; then
		pid=$(<"$RUN/dockerd.pid")
		for ((i = 0; i < 100; i++)); do
			[[ $pid =~ ^[0-9]+$ && -e /proc/$pid ]] || break
			sleep 0.1
		done
		[[ ! -e /proc/$pid ]] || die "the previous dockerd ($pid) is still there after 10s"
	fi
	up_dockerd
	log "dockerd restarted in $DIR"
}

# --------------------------------------------------------------------------- restart-containerd

# cmd_restart_containerd DIR: kill the environment's containerd with SIGKILL, as a crash or the
# OOM killer would, and start it again with the same configuration once it is gone. Its shims
# (and their containers) keep running and are picked up again, as after a real crash; dockerd
# and pullguard have to reconnect by themselves.
cmd_restart_containerd() {
	need_root restart-containerd
	load_env "$@"
	local pid i
	if pid_of "$RUN/containerd.pid" "$CTRD_CONF"; then
		pid=$(<"$RUN/containerd.pid")
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_of "$RUN/containerd.pid" "$CTRD_CONF" || break
			sleep 0.1
		done
		! pid_of "$RUN/containerd.pid" "$CTRD_CONF" || die "containerd ($pid) is still there 10s after SIGKILL"
	fi
	start containerd "$RUN/containerd.pid" containerd --config "$CTRD_CONF"
	wait_ready containerd "$RUN/containerd.pid" "$CTRD_CONF" 20 ctr --address "$CTRD_SOCK" version
	log "containerd restarted in $DIR"
}

# ---------------------------------------------------------------------------------------- main

main() {
	local sub=${1:-}
	shift || true
	case $sub in
	install) cmd_install ;;
	up) cmd_up "$@" ;;
	seed) cmd_seed "$@" ;;
	down) cmd_down "$@" ;;
	restart-dockerd) cmd_restart_dockerd "$@" ;;
	restart-containerd) cmd_restart_containerd "$@" ;;
	*) usage ;;
	esac
}

main "$@"
