package integration

// Helpers shared by the tests and benchmarks of `pullguard daemon` and `pullguard scan` on
// Docker (docker_test.go, reload_test.go, bench_test.go).

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/pullguard/pullguard/policy"
)

const (
	// actDeadline is how long pullguard gets to act on an event. It usually takes a few
	// milliseconds; the margin is for a loaded 2-core machine.
	actDeadline = 15 * time.Second
	// readyDeadline bounds the start-up: policy load plus the first reconcile.
	readyDeadline = 20 * time.Second
	// notifyDeadline bounds the wait for one sd_notify datagram.
	notifyDeadline = 10 * time.Second
)

// MESSAGE_IDs the tests filter on. They are copied, not imported from daemon/: SREs' filters
// depend on these exact values, so a change there must fail here.
const (
	msgActionTaken   = "7c8e982039f1450dbce9a0e2f612b68a"
	msgWouldAct      = "668fa933e1a941c29710f7a5d45f3c82"
	msgPolicyLoaded  = "f502ef608d7c4b22b87f111f60c2546d"
	msgPolicyInvalid = "cc9e6ea108b94998b2762bd6a27b5152"
	msgStarted       = "86b70b17b49b40deaa40068acfd22c57"
	msgStopping      = "e16248c5ec4c41288948d42b2ba3fcf6"

	msgRuntimeConnected    = "c79fbfa9afc24b5f8b0d3ba6bd2301f3"
	msgRuntimeDisconnected = "82e3253dbd0844049a88d072592d7394"
)

// policyYAML is a policy for the seeded images: it allows approved/** (and myorg/base when
// withMyorgBase), denies evil/** by an explicit rule, and leaves the rest (library/nginx,
// the typosquat myorg-base) to the default, deny.
func policyYAML(e *Env, mode string, withMyorgBase bool, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\n", mode)
	for _, line := range extra {
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "allow:\n  - image: %s/approved/**\n", e.Registry)
	if withMyorgBase {
		fmt.Fprintf(&b, "  - image: %s/myorg/base\n", e.Registry)
	}
	fmt.Fprintf(&b, "deny:\n  - image: %s/evil/**\n", e.Registry)
	return b.String()
}

// lineOf is the 1-based line of yaml holding substr, for the file:line pullguard reports.
func lineOf(t testing.TB, yaml, substr string) int {
	t.Helper()
	for i, line := range strings.Split(yaml, "\n") {
		if strings.Contains(line, substr) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the policy:\n%s", substr, yaml)
	return 0
}

// policyHash is the hash pullguard logs for the policy at path (given as the daemon was):
// computed by the policy package itself, so the test checks that the daemon loaded exactly
// what is on disk.
func policyHash(t testing.TB, path string) string {
	t.Helper()
	p, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		t.Fatalf("the test's own policy does not load: %v", err)
	}
	return p.Hash
}

// guard is a running `pullguard daemon` guarding the environment's dockerd.
type guard struct {
	*Pullguard
	Notify *notifySocket
	// since is when it was started; its journal entries are the ones after (a _PID may have
	// been used by an earlier run, and journald keeps entries across runs).
	since time.Time
}

// startGuard starts `pullguard daemon` on the environment's dockerd only (containerd has its
// own tests), logging to journald, with NOTIFY_SOCKET set, and waits for READY=1: the policy
// is loaded and the first reconcile is done.
func startGuard(t testing.TB, e *Env, policyPath string, extra ...string) *guard {
	t.Helper()
	g := startGuardNoWait(t, e, policyPath, extra...)
	if msg := g.Notify.WaitFor(t, readyDeadline, "READY=1"); msg == "" {
		t.Fatalf("no READY=1 from pullguard; output:\n%s", g.Output())
	}
	return g
}

// startGuardNoWait is startGuard without waiting for READY=1.
func startGuardNoWait(t testing.TB, e *Env, policyPath string, extra ...string) *guard {
	t.Helper()
	n := listenNotify(t)
	// StartPullguard passes the test process's environment on (Env.Environ), so this reaches
	// the daemon; t.Setenv restores it when the test ends.
	t.Setenv("NOTIFY_SOCKET", n.Path)
	args := append([]string{"daemon", "--policy", policyPath,
		"--docker-host", e.DockerHost, "--containerd-address", "none",
		"--log-target", "journald", "--log-level", "debug"}, extra...)
	since := time.Now()
	p := StartPullguard(t, args...)
	return &guard{Pullguard: p, Notify: n, since: since}
}

// Entries are the daemon's journal entries matching matches, oldest first.
func (g *guard) Entries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	all := JournalEntries(t, append([]string{"_PID=" + strconv.Itoa(g.PID())}, matches...)...)
	since := g.since.Add(-time.Second).UnixMicro() // journald and we read one clock; be lenient
	return slices.DeleteFunc(all, func(e map[string]string) bool {
		ts, err := strconv.ParseInt(e["__REALTIME_TIMESTAMP"], 10, 64)
		return err != nil || ts < since
	})
}

// WaitEntry waits for the daemon's first journal entry matching matches and returns it.
func (g *guard) WaitEntry(t testing.TB, deadline time.Duration, matches ...string) map[string]string {
	t.Helper()
	return g.WaitEntries(t, deadline, 1, matches...)[0]
}

// WaitEntries waits until at least n of the daemon's journal entries match and returns them.
func (g *guard) WaitEntries(t testing.TB, deadline time.Duration, n int, matches ...string) []map[string]string {
	t.Helper()
	var entries []map[string]string
	Eventually(t, deadline, func() (bool, string) {
		entries = g.Entries(t, matches...)
		return len(entries) >= n, fmt.Sprintf("%d journal entries of pullguard (pid %d) match %q, want %d; output:\n%s",
			len(entries), g.PID(), matches, n, g.Output())
	})
	return entries
}

// Signal sends sig to the daemon.
func (g *guard) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to pullguard: %v", sig, err)
	}
}

// Running reports whether the daemon has not exited.
func (g *guard) Running() bool {
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// notifySocket is a stand-in for systemd's notification socket: it collects what the daemon
// sends with sd_notify, one datagram a message.
type notifySocket struct {
	Path string
	msgs chan string
	seen []string // messages passed over by WaitFor, for failure messages
}

func listenNotify(t testing.TB) *notifySocket {
	t.Helper()
	// Unix socket paths are limited to 107 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "pgnotify-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{Path: path, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		os.RemoveAll(dir)
	})
	return n
}

// Next returns the next message, or fails the test after deadline.
func (n *notifySocket) Next(t testing.TB, deadline time.Duration) string {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			t.Fatal("the notify socket was closed")
		}
		return m
	case <-time.After(deadline):
		t.Fatalf("no sd_notify message within %v (earlier: %q)", deadline, n.seen)
		return ""
	}
}

// WaitFor returns the first message holding the assignment line (e.g. "READY=1"), skipping
// others, or fails the test after deadline.
func (n *notifySocket) WaitFor(t testing.TB, deadline time.Duration, line string) string {
	t.Helper()
	end := time.After(deadline)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatal("the notify socket was closed")
			}
			if slices.Contains(strings.Split(m, "\n"), line) {
				return m
			}
			n.seen = append(n.seen, m)
		case <-end:
			t.Fatalf("no sd_notify message with %s within %v (seen: %q)", line, deadline, n.seen)
			return ""
		}
	}
}

// notifyFields splits a notify message into its assignments.
func notifyFields(msg string) map[string]string {
	fields := map[string]string{}
	for line := range strings.SplitSeq(msg, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			fields[k] = v
		}
	}
	return fields
}

// waitImageGone waits until ref (a name or an ID) no longer names an image in dockerd.
func waitImageGone(t testing.TB, e *Env, ref string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		return !e.ImageExists(t, ref), ref + " is still in dockerd"
	})
}

// requireImage fails the test unless ref names the image id (or any image, when id is "").
func requireImage(t testing.TB, e *Env, ref, id string) {
	t.Helper()
	img, ok := e.InspectImage(t, ref)
	switch {
	case !ok:
		t.Errorf("%s is gone from dockerd, but the policy allows it", ref)
	case id != "" && img.ID != id:
		t.Errorf("%s is image %s, want %s", ref, img.ID, id)
	}
}

// imageID is the ID of the image ref names; the test fails if there is none.
func imageID(t testing.TB, e *Env, ref string) string {
	t.Helper()
	img, ok := e.InspectImage(t, ref)
	if !ok {
		t.Fatalf("%s is not in dockerd", ref)
	}
	return img.ID
}

// containerState is the container's state (running, exited, ...), "" when there is no such
// container.
func containerState(t testing.TB, e *Env, id string) string {
	t.Helper()
	out, err := e.DockerErr(t, "container", "inspect", "--format", "{{.State.Status}}", id)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "no such container") {
			return ""
		}
		t.Fatal(err)
	}
	return out
}

// waitContainerGone waits until the container no longer exists.
func waitContainerGone(t testing.TB, e *Env, id string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		st := containerState(t, e, id)
		return st == "", fmt.Sprintf("container %s is still there (%s)", id, st)
	})
}

// dockerAPI is a Docker Engine API client for the environment's dockerd, for what the CLI
// does too slowly (a burst of tags) or cannot do (timestamps of events).
func dockerAPI(t testing.TB, e *Env) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost(e.DockerHost)) // negotiates the API version itself
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rootfsTar writes a tarball of a minimal runnable root file system (static busybox with sh
// and sleep) for `docker import`, and returns its path. marker makes the image's content, so
// its ID, differ from the seeded images'.
func rootfsTar(t testing.TB, marker string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, applet := range []string{"sh", "sleep", "true"} {
		add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "marker", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(marker))}, []byte(marker))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// killDockerd kills the environment's dockerd with SIGKILL, as a crash or the OOM killer
// would, and waits until the process is gone.
func killDockerd(t testing.TB, e *Env) {
	t.Helper()
	b, err := os.ReadFile(e.vars["DOCKERD_PID_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dockerd pid file: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 dockerd (%d): %v", pid, err)
	}
	Eventually(t, actDeadline, func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return errors.Is(err, os.ErrNotExist), fmt.Sprintf("dockerd (%d) is still there after SIGKILL", pid)
	})
}

// startDockerd starts the environment's dockerd again, with the flags testenv.sh up gave it.
func startDockerd(t testing.TB, e *Env) {
	t.Helper()
	if out, err := testenv("restart-dockerd", e.Dir); err != nil {
		t.Fatalf("testenv.sh restart-dockerd: %v\n%s", err, out)
	}
}

// runPullguard runs a one-shot pullguard command (scan) in the environment and returns its
// stdout, stderr and exit status.
func runPullguard(t testing.TB, e *Env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, BuildPullguard(t), args...)
	cmd.Env = e.Environ()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("pullguard %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}
