package integration

// The README's quick start, run as written (issue 28): the first thing a user copies must keep
// working. The block between the README's quickstart markers is run by bash, unchanged, against
// the test environment's Debian 12 stack. What a host has and the test environment has not is
// stood in for by shell functions defined before the block, each doing on this machine what
// the real command does on a host, and nothing else:
//
//   - sudo: the test already runs as root; it runs the command.
//   - apt install ./dist/pullguard_*.deb: puts in place what the package installs and the
//     quick start uses: the binary built from this tree as `pullguard` on PATH, and
//     /etc/pullguard with the shipped packaging/policy.yaml and an empty policy.d/, modes as
//     packaging/nfpm.yaml sets them. (What the .deb itself installs is packaging/verify.sh's.)
//   - systemctl enable --now pullguard.service: starts `pullguard daemon` as the unit does,
//     with the environment's sockets in the environment (PULLGUARD_DOCKER_HOST,
//     PULLGUARD_CONTAINERD_ADDRESS, PULLGUARD_STATUS_SOCKET — what /etc/default/pullguard would
//     say on such a host), logging to journald, and returns once it is ready, as Type=notify
//     makes systemctl do.
//   - journalctl -u pullguard: the daemon is no unit here, so -u pullguard becomes its _PID and
//     start time; every other argument is passed to the real journalctl.
//
// The block writes /etc/pullguard, so it runs in a private mount namespace where /etc is an
// overlay on a tmpfs: the host's /etc is never written, and everything the block wrote is gone
// when the daemon it started has stopped.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	quickStartStart = "<!-- quickstart"
	quickStartEnd   = "<!-- /quickstart -->"
)

// quickStartBlock is the shell code of the README's quick start: the one fenced block between
// its markers.
func quickStartBlock(readme string) (string, error) {
	start := strings.Index(readme, quickStartStart)
	end := strings.Index(readme, quickStartEnd)
	if start < 0 || end < start {
		return "", fmt.Errorf("no block between %q and %q", quickStartStart, quickStartEnd)
	}
	fence := regexp.MustCompile("(?s)\n```(?:sh|bash)\n(.*?\n)```\n")
	blocks := fence.FindAllStringSubmatch(readme[start:end+1], -1)
	if len(blocks) != 1 {
		return "", fmt.Errorf("%d sh blocks between the quickstart markers, want 1", len(blocks))
	}
	return blocks[0][1], nil
}

// quickStartShown is what the README shows the quick start's pullguard commands print: the
// console block after the quick start, as command → its output lines. Commands of other
// programs (journalctl: dates, host names) are left out.
func quickStartShown(readme string) (map[string][]string, error) {
	end := strings.Index(readme, quickStartEnd)
	if end < 0 {
		return nil, fmt.Errorf("no %q", quickStartEnd)
	}
	m := regexp.MustCompile("(?s)\n```console\n(.*?\n)```\n").FindStringSubmatch(readme[end:])
	if m == nil {
		return nil, fmt.Errorf("no console block after the quick start")
	}
	shown := map[string][]string{}
	cmd := ""
	for _, line := range strings.Split(strings.TrimSuffix(m[1], "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, "$ "); ok {
			cmd = strings.TrimPrefix(c, "sudo ")
			if strings.HasPrefix(cmd, "pullguard ") {
				shown[cmd] = nil
			}
			continue
		}
		if _, ok := shown[cmd]; ok {
			shown[cmd] = append(shown[cmd], line)
		}
	}
	if len(shown) == 0 {
		return nil, fmt.Errorf("the console block after the quick start shows no pullguard command")
	}
	return shown, nil
}

// quickStartPrelude defines the stand-ins (see the top of this file). QS_* come from the test.
const quickStartPrelude = `set -euo pipefail
export PATH="$QS_DIR/bin:$PATH"

sudo() { "$@"; }

apt() {
	if [ "$#" != 2 ] || [ "$1" != install ] || [[ $2 != ./dist/pullguard_*.deb ]]; then
		echo "quickstart: no stand-in for: apt $*" >&2
		return 1
	fi
	install -D -m 0755 "$QS_BIN" "$QS_DIR/bin/pullguard"
	install -d -m 0755 /etc/pullguard /etc/pullguard/policy.d
	install -m 0644 "$QS_SHIPPED_POLICY" /etc/pullguard/policy.yaml
}

systemctl() {
	case "$*" in
	"enable --now pullguard.service" | "enable --now pullguard" | "start pullguard.service" | "start pullguard") ;;
	*)
		echo "quickstart: no stand-in for: systemctl $*" >&2
		return 1
		;;
	esac
	date +%s >"$QS_DIR/daemon.since"
	pullguard daemon >"$QS_DIR/daemon.log" 2>&1 &
	echo $! >"$QS_DIR/daemon.pid"
	local pid=$! since
	since=$(cat "$QS_DIR/daemon.since")
	for _ in $(seq 1 200); do
		if command journalctl -q --no-pager "_PID=$pid" "MESSAGE_ID=$QS_STARTED" --since "@$since" | grep -q .; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "quickstart: pullguard daemon exited:" >&2
			cat "$QS_DIR/daemon.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "quickstart: pullguard daemon not ready after 20s" >&2
	return 1
}

journalctl() {
	local args=()
	while [ "$#" -gt 0 ]; do
		case $1 in
		-u)
			if [ "${2:-}" != pullguard ]; then
				echo "quickstart: no stand-in for: journalctl -u ${2:-}" >&2
				return 1
			fi
			args+=("_PID=$(cat "$QS_DIR/daemon.pid")" --since "@$(cat "$QS_DIR/daemon.since")")
			shift
			;;
		*) args+=("$1") ;;
		esac
		shift
	done
	command journalctl --no-pager "${args[@]}"
}

# The README's block follows.
`

// quickStartMounts gives the block its own /etc: an overlay on a tmpfs, in the private mount
// namespace unshare made, then runs the script $1/quickstart.sh there.
const quickStartMounts = `set -e
d=$1
mkdir -p "$d/etc-layer"
mount -t tmpfs -o mode=0755 pullguard-quickstart "$d/etc-layer"
mkdir -m 0755 "$d/etc-layer/upper" "$d/etc-layer/work"
mount -t overlay pullguard-quickstart -o "lowerdir=/etc,upperdir=$d/etc-layer/upper,workdir=$d/etc-layer/work" /etc
exec bash "$d/quickstart.sh"
`

// TestQuickStart runs the README's quick start on a host whose Docker holds an image the quick
// start's policy does not allow, and checks what the README promises on the way: the policy
// validates in audit mode, nginx is allowed, the journal shows the disallowed image as
// would-remove and nothing is removed in audit mode, and once the block has switched to enforce
// the image is removed.
func TestQuickStart(t *testing.T) {
	e := RequireEnv(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block, err := quickStartBlock(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	shipped, err := filepath.Abs("../packaging/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}

	evil := e.Ref("evil/miner:1.0")
	e.Docker(t, "pull", "-q", evil)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "quickstart.sh"), []byte(quickStartPrelude+block), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", quickStartMounts, "quickstart", dir)
	cmd.Dir = dir
	cmd.Env = append(e.Environ(),
		"QS_DIR="+dir,
		"QS_BIN="+BuildPullguard(t),
		"QS_SHIPPED_POLICY="+shipped,
		"QS_STARTED="+msgStarted,
		"PULLGUARD_DOCKER_HOST="+e.DockerHost,
		"PULLGUARD_CONTAINERD_ADDRESS="+e.ContainerdAddress,
		"PULLGUARD_STATUS_SOCKET="+filepath.Join(dir, "status.sock"),
		"PULLGUARD_LOG_TARGET=journald",
		"PULLGUARD_STATE_DIR="+filepath.Join(dir, "state"),
	)
	cmd.WaitDelay = 5 * time.Second // the daemon the block starts keeps running; it writes to its own log
	t.Cleanup(func() { stopQuickStartDaemon(t, dir) })
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's quick start failed (%v):\n%s\ndaemon log:\n%s", err, out, readOrEmpty(filepath.Join(dir, "daemon.log")))
	}
	t.Logf("the README's quick start:\n%s", out)

	for _, want := range []string{
		"policy is valid: mode=audit",
		"ALLOW docker.io/library/nginx:latest /etc/pullguard/policy.yaml:",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the quick start's output does not show %q", want)
		}
	}
	// What the README shows these commands print is what they printed.
	shown, err := quickStartShown(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for cmd, lines := range shown {
		for _, line := range lines {
			if !slices.Contains(strings.Split(string(out), "\n"), line) {
				t.Errorf("README.md shows %q printing\n\t%s\nbut the quick start's run printed no such line", cmd, line)
			}
		}
	}
	// The journal query the README shows (PULLGUARD_ACTION=would-remove) lists the disallowed
	// image: the entry's MESSAGE reads "audit: would remove docker image REF: reason"...
	if !strings.Contains(string(out), "would remove docker image "+evil+":") {
		t.Errorf("the quick start's journalctl PULLGUARD_ACTION=would-remove does not show %s", evil)
	}
	// ...and, after the switch to enforce, the daemon removes it.
	Eventually(t, actDeadline, func() (bool, string) {
		return !e.ImageExists(t, evil), evil + " is still there after the quick start switched to enforce"
	})
	pid := readPID(t, filepath.Join(dir, "daemon.pid"))
	// The daemon logs asynchronously: the entry may land just after the removal.
	removed := WaitJournal(t, actDeadline, "_PID="+strconv.Itoa(pid), "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+evil)
	if removed[0]["PULLGUARD_MODE"] != "enforce" {
		t.Errorf("the removal's PULLGUARD_MODE = %q, want enforce", removed[0]["PULLGUARD_MODE"])
	}
}

// TestQuickStartBlock: the marker parsing finds the block, and refuses what would run nothing.
func TestQuickStartBlock(t *testing.T) {
	good := "intro\n" + quickStartStart + " -->\n```sh\necho one\necho two\n```\n" + quickStartEnd + "\n"
	if got, err := quickStartBlock(good); err != nil || got != "echo one\necho two\n" {
		t.Errorf("quickStartBlock = %q, %v; want the two lines", got, err)
	}
	for name, readme := range map[string]string{
		"no markers":     "```sh\necho one\n```\n",
		"no block":       quickStartStart + " -->\ntext\n" + quickStartEnd + "\n",
		"two blocks":     quickStartStart + " -->\n```sh\na\n```\n\n```sh\nb\n```\n" + quickStartEnd + "\n",
		"end before one": quickStartEnd + "\n" + quickStartStart + " -->\n```sh\na\n```\n",
	} {
		if got, err := quickStartBlock(readme); err == nil {
			t.Errorf("%s: quickStartBlock = %q, want an error", name, got)
		}
	}
}

// TestQuickStartShown: the outputs the README shows are read per pullguard command, sudo or not;
// other commands' lines are left out.
func TestQuickStartShown(t *testing.T) {
	readme := quickStartEnd + "\ntext\n\n```console\n$ sudo pullguard policy validate\npolicy is valid\n" +
		"$ pullguard check nginx\nALLOW a\nDENY b\n$ sudo journalctl -u pullguard\nDec 07 host x\n```\n"
	got, err := quickStartShown(readme)
	want := map[string][]string{"pullguard policy validate": {"policy is valid"}, "pullguard check nginx": {"ALLOW a", "DENY b"}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("quickStartShown = %v, %v; want %v", got, err, want)
	}
	if got, err := quickStartShown(quickStartEnd + "\n```console\n$ journalctl\nx\n```\n"); err == nil {
		t.Errorf("quickStartShown of a block with no pullguard command = %v, want an error", got)
	}
}

// stopQuickStartDaemon stops the daemon the quick start started (its pid file says which) and
// waits for it to exit, which also ends the block's mount namespace.
func stopQuickStartDaemon(t *testing.T, dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "daemon.pid"))
	if err != nil {
		return // the block never started it
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Errorf("daemon.pid: %v", err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return // already gone
	}
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("the quick start's daemon (pid %d) did not stop within 10s of SIGTERM", pid)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether pid is a live process: the daemon outlives the shell that started
// it, so once it exits it may stay a zombie until whoever inherited it reaps it.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses, STATE follows the last ")".
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

func readOrEmpty(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}
