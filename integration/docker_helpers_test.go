package integration

// Helpers of the tests and benchmarks of `pullguard daemon` and `pullguard scan` on Docker
// (docker_test.go, reload_test.go, bench_test.go): pullguard guarding the environment's dockerd
// with a stand-in for systemd's notification socket, images and containers in dockerd, and
// dockerd killed and restarted.

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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// notifyDeadline bounds the wait for one sd_notify datagram.
const notifyDeadline = 10 * time.Second

// startDockerGuard starts `pullguard daemon` on the environment's dockerd only (containerd has
// its own tests), logging to journald at debug level, with NOTIFY_SOCKET set, and waits for
// READY=1: the policy is loaded and the first reconcile is done.
func startDockerGuard(t testing.TB, e *Env, policyPath string, extra ...string) *Pullguard {
	t.Helper()
	p, notify := startDockerGuardNoWait(t, e, policyPath, extra...)
	if msg := notify.WaitFor(t, readyDeadline, "READY=1"); msg == "" {
		t.Fatalf("no READY=1 from pullguard; output:\n%s", p.Output())
	}
	return p
}

// startDockerGuardNoWait is startDockerGuard without waiting for READY=1; it returns the
// notification socket the daemon reports to.
func startDockerGuardNoWait(t testing.TB, e *Env, policyPath string, extra ...string) (*Pullguard, *notifySocket) {
	t.Helper()
	notify := listenNotify(t)
	// StartPullguard passes the test process's environment on (Env.Environ), so this reaches
	// the daemon; t.Setenv restores it when the test ends.
	t.Setenv("NOTIFY_SOCKET", notify.Path)
	args := append([]string{"--docker-host", e.DockerHost, "--containerd-address", "none", "--log-level", "debug"}, extra...)
	return StartPullguard(t, daemonArgs(policyPath, args...)...), notify
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
	path := filepath.Join(socketDir(t, "pgnotify-"), "notify.sock")
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
	t.Cleanup(func() { conn.Close() })
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
	pid := e.DockerdPID(t)
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
	e.Restart(t, "dockerd")
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
