#!/usr/bin/env bash
# testenv.sh: a real, private container-runtime environment for pullguard's integration tests.
#
#   testenv.sh install    (root) install the Debian packages below that are missing and build the
#                         2026 tools (integration/tools) and the kubelet (integration/tools/kubelet)
#                         once into cache directories
#   testenv.sh tools-dir  print that directory's bin (what DIR/env exports as PGENV_TOOLS)
#   testenv.sh up DIR     (root) start containerd 1.6 and dockerd 20.10 (Debian's), containerd
#                         2.4.2 and Docker 29 on it (built), a registry and, if none runs, journald
#   testenv.sh seed DIR   build a tiny busybox image from nothing, push it under the test names,
#                         then remove the local copies so dockerd starts with an empty image store
#   testenv.sh down DIR   stop what `up` started, unmount what is left under DIR; safe to repeat
#   testenv.sh restart-dockerd DIR [2026]  (root) start the environment's dockerd (2026: Docker
#                         29) again, same flags
#   testenv.sh restart-containerd DIR [2026]  (root) kill -9 the environment's containerd (2026:
#                         2.4.2), start it again
#   testenv.sh up-containerd2 DIR c2-NAME / down-containerd2 DIR c2-NAME  (root) start/stop one
#                         more containerd 2.4.2 in DIR/c2-NAME (socket DIR/run/c2-NAME.sock)
#
# Everything `up` starts lives under DIR (sockets, state, logs), so several environments can run
# side by side and the host's /var/lib/docker, /run/docker.sock, /etc/docker etc. are not used.
# Outside DIR are only journald, the tools' cache and the shim sockets containerd always puts in
# /run/containerd/s. journald is a host singleton: `up` reuses a running one; `down` stops it
# only if this environment started it and no other environment is up (then it keeps running).
# DIR is kept by `down` (logs stay readable); remove it yourself afterwards.
#
# `seed` pushes one busybox image as approved/busybox:{1.0,1.1,latest}, myorg-base:1.0,
# myorg/base:1.0 and library/nginx:1.25, and a second image (one extra file, so another ID) as
# evil/miner:{latest,1.0}, and the pod sandbox image k8s/pause:3.10, all under $REGISTRY/.
#
# DIR/env is sourceable (`. DIR/env`) and defines:
#   PGENV_DIR                  DIR itself
#   DOCKER_HOST                unix://DIR/run/docker.sock, the private dockerd
#   DOCKER_CONFIG              DIR/docker/client, so the host's ~/.docker is not read or written
#   DOCKER_CONTAINERD_NAMESPACE containerd namespace of dockerd's containers (moby)
#   CONTAINERD_ADDRESS         DIR/run/containerd.sock, the private containerd (read by ctr too)
#   REGISTRY                   127.0.0.1:PORT, a plain-HTTP registry (docker and ctr --plain-http)
#   CONTAINERD_PID_FILE, DOCKERD_PID_FILE, REGISTRY_PID_FILE
#   PGENV_TOOLS                bin directory of the 2026 tools (see install): containerd, ctr,
#                              containerd-shim-runc-v2, runc, crictl, dockerd, docker-buildx,
#                              cosign, helm
#   CONTAINERD2_ADDRESS        DIR/run/c2.sock, the private containerd 2.4.2 (CRI on, for crictl)
#   CONTAINERD2_CONFIG         its config.toml; CONTAINERD2_VERIFIER_DIR its image-verifier
#                              bin_dir (empty after up); CONTAINERD2_PID_FILE
#   DOCKER29_HOST              unix://DIR/run/d29.sock, the private Docker 29 on containerd 2.4.2,
#                              with the containerd image store (namespace DOCKER29_CONTAINERD_NAMESPACE)
#   DOCKERD29_PID_FILE
#   PGENV_PAUSE_IMAGE          $REGISTRY/k8s/pause:3.10, containerd 2.4.2's pod sandbox image
#   PGENV_KUBELET              the kubelet (v1.37.2, built by install; unset until it is)
#   JOURNALD_STARTED           1 if this environment started systemd-journald (see above),
#                              0 if it reused one that was already running (host singleton)
#   JOURNALD_PID_FILE          pid file of that journald (only when JOURNALD_STARTED=1)
#   PGENV_LOG_DIR              DIR/logs, one log per component
#
# Logs: DIR/logs/{containerd,dockerd,c2,dockerd29,registry,journald}.log (c2: containerd 2.4.2)
set -euo pipefail

# apparmor: where the kernel enables AppArmor, dockerd needs apparmor_parser to start containers.
# gcc, libc6-dev, libseccomp-dev, pkg-config: runc 1.5.3 is built with cgo and libseccomp (below).
readonly PACKAGES=(containerd runc docker.io docker-registry busybox-static skopeo systemd apparmor
	gcc libc6-dev libseccomp-dev pkg-config)
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
	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

need_root() { ((EUID == 0)) || die "$1 must run as root"; }

# ---------------------------------------------------------------------------------------- install

cmd_install() {
	need_root install
	install_packages
	install_tools
	install_kubelet
}

install_packages() {
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

# The 2026 engines and tools, built from the Go module proxy (Debian has none of them). Each
# tools module pins its tools as `tool` lines and is built by ONE `go install tool`, so the
# dependencies its tools share compile once:
#   integration/tools         containerd 2.4.2 (+ ctr, shim), runc 1.5.3, crictl 1.37.0,
#                             docker-buildx 0.38.2, cosign 3.1.3, helm 3.22.0
#   integration/tools/dockerd dockerd 29 (moby v2.0.0-beta.24), on its own: in one graph with
#                             the others, MVS picks etcd/raft v3.7 (wanted by the Kubernetes
#                             0.37 libraries of crictl and helm), under which moby's swarmkit
#                             does not compile (raftpb.Message lost Size/Unmarshal).
# Build tags are global to a build but each only affects the project that reads it:
# no_btrfs/no_devmapper/no_zfs containerd's snapshotters, exclude_graphdriver_* dockerd's graph
# drivers, seccomp runc (cgo and libseccomp).
TOOLS_MOD_DIR=$(cd "$(dirname "$0")" && pwd)/tools
readonly TOOLS_MOD_DIR
readonly TOOLS_MODULES=("$TOOLS_MOD_DIR" "$TOOLS_MOD_DIR/dockerd")
readonly TOOLS_TAGS="no_btrfs no_devmapper no_zfs exclude_graphdriver_btrfs exclude_graphdriver_devicemapper exclude_graphdriver_zfs seccomp"
readonly TOOLS_CACHE=${PGENV_TOOLS_CACHE:-/var/cache/pullguard/testenv-tools}

# tools_key: what the built tools depend on — the module's requirements, the tags, the Go
# version. A change of any of them is a new directory, thus a rebuild; the same is a no-op.
tools_key() {
	local mod
	{
		for mod in "${TOOLS_MODULES[@]}"; do
			cat "$mod/go.mod" "$mod/go.sum"
		done
		echo "$TOOLS_TAGS"
		go env GOVERSION GOOS GOARCH
	} | sha256sum | cut -c1-16
}

tools_bin() { echo "$TOOLS_CACHE/$(tools_key)/bin"; }

# cached_build WHAT DIR LOCK FN: run FN DIR, which installs into DIR/bin, unless DIR/complete says
# an earlier run finished. Several worktrees or CI jobs may install at once: they take LOCK, one
# builds, the others wait for it.
cached_build() {
	local what=$1 dir=$2 lock=$3 fn=$4
	if [[ -e $dir/complete ]]; then
		log "$what up to date: $dir/bin"
		return
	fi
	mkdir -p "$TOOLS_CACHE"
	exec 9>"$lock"
	flock 9
	if [[ ! -e $dir/complete ]]; then
		log "building $what into $dir/bin (cold, the tools take tens of minutes on 2 cores)"
		rm -rf "$dir"
		mkdir -p "$dir/bin"
		local start=$SECONDS
		"$fn" "$dir"
		log "$what built in $((SECONDS - start))s"
		touch "$dir/complete"
	fi
	flock -u 9
	exec 9>&-
}

install_tools() {
	command -v go >/dev/null || die "go not found on PATH (the 2026 tools are built from source)"
	cached_build "the 2026 tools" "$TOOLS_CACHE/$(tools_key)" \
		"$TOOLS_CACHE/.lock" build_tools
}

build_tools() {
	local mod
	for mod in "${TOOLS_MODULES[@]}"; do
		(cd "$mod" && CGO_ENABLED=1 GOBIN=$1/bin GOFLAGS=-buildvcs=false \
			go install -trimpath -tags "$TOOLS_TAGS" tool) || die "building the tools of $mod failed"
	done
	# buildx is a docker CLI plugin: the CLI finds it as docker-buildx in a cli-plugins dir.
	mv "$1/bin/buildx" "$1/bin/docker-buildx"
}

# The kubelet, for the end-to-end tests through a real kubelet (nri_kubelet_test.go). A module
# and a cache directory of its own, keyed like the tools' but apart from them: adding or bumping
# it never invalidates the tools' cache (tens of minutes cold), and the tools never rebuild it.
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with ./staging paths that only
# its own repository has; integration/tools/kubelet replaces each with its published release.
# Pure Go (no cgo): one `go install tool`, minutes on 2 cores.
readonly KUBELET_MOD_DIR=$TOOLS_MOD_DIR/kubelet

# The version the kubelet reports (--version, its logs), which a build from the module proxy
# leaves at v0.0.0: the one go.mod requires.
kubelet_ldflags() {
	local v
	v=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3; exit }
		$1 == "k8s.io/kubernetes" { print $2; exit }' "$KUBELET_MOD_DIR/go.mod")
	[[ $v =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "no k8s.io/kubernetes version in $KUBELET_MOD_DIR/go.mod"
	local pkg=k8s.io/component-base/version
	echo "-X $pkg.gitVersion=$v -X $pkg.gitMajor=${BASH_REMATCH[1]} -X $pkg.gitMinor=${BASH_REMATCH[2]}"
}

kubelet_key() {
	{
		cat "$KUBELET_MOD_DIR/go.mod" "$KUBELET_MOD_DIR/go.sum"
		kubelet_ldflags
		go env GOVERSION GOOS GOARCH
	} | sha256sum | cut -c1-16
}

kubelet_dir() { echo "$TOOLS_CACHE/kubelet-$(kubelet_key)"; }

# Its own lock: it may build while another install holds the tools' lock.
install_kubelet() {
	cached_build "the kubelet" "$(kubelet_dir)" "$TOOLS_CACHE/.kubelet.lock" build_kubelet
}

build_kubelet() {
	(cd "$KUBELET_MOD_DIR" && CGO_ENABLED=0 GOBIN=$1/bin GOFLAGS=-buildvcs=false \
		go install -trimpath -ldflags "$(kubelet_ldflags)" tool) || die "building the kubelet failed"
}

# ------------------------------------------------------------------------------------- processes

# pid_of PIDFILE PATTERN: the pid in PIDFILE if that process is alive (not a zombie) and its
# command line contains PATTERN; guards against stale pid files and reused pids.
pid_of() {
	alive "$1" && [[ $(cmdline "$(<"$1")") == *"$2"* ]]
}

cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline"; }

# alive PIDFILE: the pid in PIDFILE is a live process (not a zombie), whatever it runs.
alive() {
	local pid state
	[[ -r $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ ${state%% *} != Z ]]
}

# start NAME PIDFILE CMD...: run CMD detached (own session, so a Ctrl-C aimed at the caller does
# not reach it) with all output in DIR/logs/NAME.log.
start() {
	local name=$1 pidfile=$2
	shift 2
	setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo "$!" >"$pidfile"
}

# wait_ready NAME PIDFILE SECONDS CMD...: poll CMD until it succeeds; fail with the
# component's last log lines if it exits or the deadline passes.
wait_ready() {
	local name=$1 pidfile=$2 secs=$3
	shift 3
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		# Alive is enough here (not pid_of): until its exec chain (setsid, env, ...) is
		# done, the new process still shows this script's command line, and on a loaded
		# machine the first probe can fail before that. The pattern guards stop()
		# against a reused pid, which cannot happen while we wait.
		if ! alive "$pidfile"; then
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
	local f pid state
	for f in /proc/[0-9]*/comm; do
		[[ $(cat "$f" 2>/dev/null) == systemd-journal ]] || continue
		pid=${f#/proc/}
		pid=${pid%/comm}
		# One that is exiting stores nothing: a zombie, or one whose command line is already gone,
		# as for a moment after another environment's `down` stopped the journald it started
		# (stop counts it gone then).
		state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
		[[ ${state%% *} != Z && -n $(cmdline "$pid") ]] && return 0
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
	# The 2026 engines: containerd 2.4.2 (c2) and Docker 29 (d29) on it, next to the above.
	C2_DIR=$DIR/c2
	C2_SOCK=$RUN/c2.sock
	C2_CONF=$C2_DIR/config.toml
	C2_VERIFIERS=$C2_DIR/verifiers
	D29_DIR=$DIR/d29
	D29_SOCK=$RUN/d29.sock
	CGROUP_PARENT29=$CGROUP_PARENT-29
}

cmd_up() {
	need_root up
	[[ -n ${1:-} ]] || usage
	mkdir -p "$1"
	set_paths "$@"
	if pid_of "$RUN/containerd.pid" "$CTRD_CONF" || pid_of "$RUN/dockerd.pid" "$DOCKER_SOCK" ||
		pid_of "$RUN/c2.pid" "$C2_CONF" || pid_of "$RUN/d29.pid" "$D29_SOCK"; then
		die "an environment is already up in $DIR (run: $0 down $DIR)"
	fi
	local cmd
	for cmd in containerd ctr dockerd docker docker-registry runc journalctl systemd-cat; do
		command -v "$cmd" >/dev/null || die "$cmd not found; run: $0 install"
	done
	[[ -x $JOURNALD ]] || die "$JOURNALD not found; run: $0 install"
	TOOLS=$(tools_bin)
	[[ -e $TOOLS/../complete ]] || die "the 2026 tools are not built ($TOOLS); run: $0 install"
	mkdir -p "$LOGS" "$RUN" "$DIR/containerd" "$DIR/docker/client/cli-plugins" "$DIR/registry/storage"
	# Both docker CLIs (20.10's and 29's daemons) find buildx here (DOCKER_CONFIG/cli-plugins).
	ln -sfn "$TOOLS/docker-buildx" "$DIR/docker/client/cli-plugins/docker-buildx"
	# A failed start stops whatever did start, leaving the logs for reading.
	trap 'rc=$?; if ((rc != 0)); then log "up failed; stopping what was started"; cmd_down "$DIR" || true; fi' EXIT

	up_journald
	up_containerd
	up_registry
	up_containerd2
	up_dockerd
	up_dockerd29
	write_env
	trap - EXIT
	log "up in $DIR (DOCKER_HOST=unix://$DOCKER_SOCK DOCKER29_HOST=unix://$D29_SOCK REGISTRY=$REGISTRY)"
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
	wait_ready containerd "$RUN/containerd.pid" 20 ctr --address "$CTRD_SOCK" version
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

# The pod sandbox ("pause") image CRI runs first in every pod; `seed` pushes it (the real one
# cannot be pulled here). Policies of tests that run pods must allow it.
pause_image() { echo "$REGISTRY/k8s/pause:3.10"; }

# c2_path: containerd 2.4.2 runs its own shim and runc 1.5.3 (Debian's runc 1.1.5 does not know
# the time namespace that 2.x asks for), so the tools come first on its PATH and Docker 29's.
c2_path() { echo "$TOOLS:$PATH"; }

# up_containerd2 [NAME]: start a containerd 2.4.2 with everything in DIR/NAME (default c2, the
# one Docker 29 runs on), socket DIR/run/NAME.sock, pid file DIR/run/NAME.pid, log
# DIR/logs/NAME.log. Tests start more (testenv.sh up-containerd2) to try other configurations:
# the config imports DIR/NAME/conf.d/*.toml, which a test may fill first. The registry settings
# are such a drop-in (conf.d/10-registry.toml, written unless it exists): a test can replace
# them, which it could not do from another drop-in (containerd merges tables key by key and
# never overwrites a value with an empty one).
up_containerd2() {
	local name=${1:-c2}
	local dir=$DIR/$name sock=$RUN/$name.sock
	# Config version 3 (containerd 2.x). The CRI plugin is on (crictl, kubelet-style pulls), with
	# no CNI (pods use the host network), its stream server on a free port, plain HTTP to the
	# registry (certs.d), and NRI on with a socket of its own (RUN/NAME.nri.sock; the default is
	# a host-wide path) and no plugin directories in common. The image verifier directory starts
	# empty: tests put pullguard's wrapper in it when they want it.
	mkdir -p "$dir/certs.d/$REGISTRY" "$dir/verifiers" "$dir/cni/bin" "$dir/cni/net.d" "$dir/conf.d" \
		"$dir/nri/plugins" "$dir/nri/conf.d"
	cat >"$dir/certs.d/$REGISTRY/hosts.toml" <<-EOF
		server = "http://$REGISTRY"
		[host."http://$REGISTRY"]
		  capabilities = ["pull", "resolve", "push"]
	EOF
	if [[ ! -e $dir/conf.d/10-registry.toml ]]; then
		cat >"$dir/conf.d/10-registry.toml" <<-EOF
			version = 3
			[plugins."io.containerd.cri.v1.images".registry]
			  config_path = "$dir/certs.d"
		EOF
	fi
	cat >"$dir/config.toml" <<-EOF
		version = 3
		root = "$dir/root"
		state = "$dir/state"
		imports = ["$dir/conf.d/*.toml"]
		[grpc]
		  address = "$sock"
		[ttrpc]
		  address = "$RUN/$name.ttrpc.sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$dir/opt"
		[plugins."io.containerd.nri.v1.nri"]
		  disable = false
		  socket_path = "$RUN/$name.nri.sock"
		  plugin_path = "$dir/nri/plugins"
		  plugin_config_path = "$dir/nri/conf.d"
		[plugins."io.containerd.image-verifier.v1.bindir"]
		  bin_dir = "$dir/verifiers"
		[plugins."io.containerd.cri.v1.images"]
		  snapshotter = "overlayfs"
		  [plugins."io.containerd.cri.v1.images".pinned_images]
		    sandbox = "$(pause_image)"
		[plugins."io.containerd.cri.v1.runtime"]
		  # A pod sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (a container
		  # running these tests may not have it): no lower than containerd's own.
		  restrict_oom_score_adj = true
		[plugins."io.containerd.cri.v1.runtime".cni]
		  bin_dirs = ["$dir/cni/bin"]
		  conf_dir = "$dir/cni/net.d"
		[plugins."io.containerd.grpc.v1.cri"]
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
	EOF
	start "$name" "$RUN/$name.pid" env PATH="$(c2_path)" "$TOOLS/containerd" --config "$dir/config.toml"
	wait_ready "$name" "$RUN/$name.pid" 30 "$TOOLS/ctr" --address "$sock" version
}

# down_containerd2 NAME: stop that containerd 2.4.2 and whatever it left running.
down_containerd2() {
	local name=$1 pid
	local dir=$DIR/$name sock=$RUN/$name.sock
	if pid_of "$RUN/$name.pid" "$dir/config.toml"; then
		kill_tasks "$TOOLS/ctr" "$sock"
	fi
	# Docker 29 runs on the main one: it goes first.
	[[ $name != c2 ]] || stop dockerd29 "$RUN/d29-launch.pid" "$D29_SOCK"
	stop "$name" "$RUN/$name.pid" "$dir/config.toml"
	if [[ -x $TOOLS/runc ]]; then
		delete_leftover_containers "$TOOLS/runc" "$dir/state" "$D29_DIR/exec"
	fi
	for pid in $(shims_of "$sock"); do
		log "killing leftover shim $pid and its processes"
		# shellcheck disable=SC2046
		kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
	done
}

up_dockerd29() {
	# Docker 29 on containerd 2.4.2, with the containerd image store (its default on a fresh
	# data root; said explicitly so a changed default cannot silently change what is tested).
	mkdir -p "$D29_DIR"
	printf '{"features": {"containerd-snapshotter": true}}\n' >"$D29_DIR/daemon.json"
	start dockerd29 "$RUN/d29-launch.pid" env PATH="$(c2_path)" "$TOOLS/dockerd" \
		--config-file "$D29_DIR/daemon.json" \
		-H "unix://$D29_SOCK" \
		--data-root "$D29_DIR/data" \
		--exec-root "$D29_DIR/exec" \
		--pidfile "$RUN/d29.pid" \
		--containerd "$C2_SOCK" \
		--containerd-namespace moby \
		--containerd-plugins-namespace plugins.moby \
		--bridge=none --iptables=false --ip6tables=false --ip-masq=false \
		--storage-driver overlayfs \
		--cgroup-parent "/$CGROUP_PARENT29" \
		--shutdown-timeout 2
	wait_ready dockerd29 "$RUN/d29-launch.pid" 90 \
		env DOCKER_HOST="unix://$D29_SOCK" DOCKER_CONFIG="$DIR/docker/client" docker version
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
	wait_ready dockerd "$RUN/dockerd-launch.pid" 60 \
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
		echo "export PGENV_TOOLS=$TOOLS"
		echo "export PGENV_PAUSE_IMAGE=$(pause_image)"
		echo "export CONTAINERD2_ADDRESS=$C2_SOCK"
		echo "export CONTAINERD2_CONFIG=$C2_CONF"
		echo "export CONTAINERD2_VERIFIER_DIR=$C2_VERIFIERS"
		echo "export CONTAINERD2_PID_FILE=$RUN/c2.pid"
		echo "export DOCKER29_HOST=unix://$D29_SOCK"
		echo "export DOCKER29_CONTAINERD_NAMESPACE=moby"
		echo "export DOCKERD29_PID_FILE=$RUN/d29.pid"
		# Only once built (testenv.sh install): the kubelet tests say so when it is missing.
		if [[ -e $(kubelet_dir)/complete ]]; then
			echo "export PGENV_KUBELET=$(kubelet_dir)/bin/kubelet"
		fi
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
	TOOLS=$PGENV_TOOLS
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
	# The pod sandbox image: the busybox rootfs, sleeping forever as the real pause does.
	docker import -c 'ENV PATH=/bin' -c 'ENTRYPOINT ["/bin/sleep", "2147483647"]' \
		"$DIR/seed/busybox.tar" "$PGENV_PAUSE_IMAGE" >/dev/null

	local ref pushed=("$PGENV_PAUSE_IMAGE")
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
	TOOLS=$(tools_bin)
	local f
	for f in "$RUN"/c2*.pid; do
		[[ -e $f ]] || continue
		f=${f##*/}
		down_containerd2 "${f%.pid}"
	done
	if pid_of "$RUN/containerd.pid" "$CTRD_CONF"; then
		kill_tasks ctr "$CTRD_SOCK"
	fi
	stop dockerd "$RUN/dockerd-launch.pid" "$DOCKER_SOCK"
	stop containerd "$RUN/containerd.pid" "$CTRD_CONF"
	stop registry "$RUN/registry.pid" "$REG_CONF"

	# If containerd died before deleting tasks, their containers and shims are still running.
	delete_leftover_containers runc "$DIR/containerd/state" "$DIR/docker/exec"
	for pid in $(shims_of "$CTRD_SOCK"); do
		log "killing leftover shim $pid and its processes"
		# shellcheck disable=SC2046
		kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
	done

	unmount_under "$DIR"
	remove_cgroup_parent "$CGROUP_PARENT"
	remove_cgroup_parent "$CGROUP_PARENT29"

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

# kill_tasks CTR SOCKET: remove every task of the containerd at SOCKET, in every namespace.
kill_tasks() {
	local ns id
	for ns in $("$1" --address "$2" namespaces ls -q 2>/dev/null); do
		for id in $("$1" --address "$2" -n "$ns" tasks ls -q 2>/dev/null); do
			"$1" --address "$2" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
		done
	done
}

# delete_leftover_containers RUNC STATE EXECROOT: containers whose task state a containerd left
# in STATE, deleted with RUNC, which kills them and removes their cgroups and runc state. Docker
# gives runc a root in its EXECROOT; ctr and CRI leave runc's default,
# /run/containerd/runc/NAMESPACE, on the host.
delete_leftover_containers() {
	local runc=$1 tasks=$2/io.containerd.runtime.v2.task task ns id root
	for task in "$tasks"/*/*/; do
		[[ -d $task ]] || continue
		task=${task%/}
		id=${task##*/}
		ns=${task%/*}
		ns=${ns##*/}
		for root in "$3/runtime-runc/$ns" "/run/containerd/runc/$ns"; do
			if [[ -e $root/$id ]]; then
				log "deleting leftover container $ns/$id"
				"$runc" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
			fi
		done
	done
}

# remove_cgroup_parent NAME: a Docker cgroup parent of this environment, once its containers are
# gone.
remove_cgroup_parent() {
	local i dirs
	for ((i = 0; i < 20; i++)); do
		dirs=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name "$1")
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
	load_env "$1"
	local name=dockerd launch=$RUN/dockerd-launch.pid pidfile=$RUN/dockerd.pid sock=$DOCKER_SOCK
	local ctrd_pid=$RUN/containerd.pid ctrd_conf=$CTRD_CONF up=up_dockerd
	if [[ ${2:-} == 2026 ]]; then
		name=dockerd29 launch=$RUN/d29-launch.pid pidfile=$RUN/d29.pid sock=$D29_SOCK
		ctrd_pid=$RUN/c2.pid ctrd_conf=$C2_CONF up=up_dockerd29
	fi
	pid_of "$ctrd_pid" "$ctrd_conf" || die "the containerd under $name of $DIR is not running"
	stop "$name" "$launch" "$sock"
	# dockerd refuses to start while its --pidfile names a process that still exists, and one
	# killed with SIGKILL takes a moment to go (and to be reaped).
	local pid i
	if [[ -r $pidfile ]]; then
		pid=$(<"$pidfile")
		for ((i = 0; i < 100; i++)); do
			[[ $pid =~ ^[0-9]+$ && -e /proc/$pid ]] || break
			sleep 0.1
		done
		[[ ! -e /proc/$pid ]] || die "the previous $name ($pid) is still there after 10s"
	fi
	$up
	log "$name restarted in $DIR"
}

# --------------------------------------------------------------------------- restart-containerd

# cmd_restart_containerd DIR: kill the environment's containerd with SIGKILL, as a crash or the
# OOM killer would, and start it again with the same configuration once it is gone. Its shims
# (and their containers) keep running and are picked up again, as after a real crash; dockerd
# and pullguard have to reconnect by themselves.
cmd_restart_containerd() {
	need_root restart-containerd
	load_env "$1"
	local name=containerd pidfile=$RUN/containerd.pid conf=$CTRD_CONF
	if [[ ${2:-} == 2026 ]]; then
		name=c2 pidfile=$RUN/c2.pid conf=$C2_CONF
	fi
	local pid i
	if pid_of "$pidfile" "$conf"; then
		pid=$(<"$pidfile")
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_of "$pidfile" "$conf" || break
			sleep 0.1
		done
		! pid_of "$pidfile" "$conf" || die "$name ($pid) is still there 10s after SIGKILL"
	fi
	if [[ $name == c2 ]]; then
		up_containerd2 c2
	else
		start containerd "$pidfile" containerd --config "$conf"
		wait_ready containerd "$pidfile" 20 ctr --address "$CTRD_SOCK" version
	fi
	log "$name restarted in $DIR"
}

# ---------------------------------------------------------------------------------------- main

main() {
	local sub=${1:-}
	shift || true
	case $sub in
	install) cmd_install ;;
	tools-dir) tools_bin ;;
	up) cmd_up "$@" ;;
	seed) cmd_seed "$@" ;;
	down) cmd_down "$@" ;;
	restart-dockerd) cmd_restart_dockerd "$@" ;;
	restart-containerd) cmd_restart_containerd "$@" ;;
	up-containerd2)
		need_root up-containerd2
		load_env "$1"
		[[ ${2:-} =~ ^c2-[a-z0-9]{1,12}$ ]] || die "up-containerd2 DIR c2-NAME (a-z0-9, up to 12)"
		up_containerd2 "$2"
		;;
	down-containerd2)
		need_root down-containerd2
		load_env "$1"
		[[ ${2:-} =~ ^c2-[a-z0-9]{1,12}$ ]] || die "down-containerd2 DIR c2-NAME"
		down_containerd2 "$2"
		;;
	*) usage ;;
	esac
}

main "$@"
