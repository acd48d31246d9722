package integration

// Helpers of the containerd and authorization plugin tests and benchmarks (containerd_test.go,
// authz_test.go, authz_bench_test.go): a pullguard daemon and its journal entries, the
// authorization plugin switched on and off in the environment's dockerd, raw Docker API
// requests, and latency quantiles.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// rtActDeadline is how long pullguard gets to act on an event, a reload or a reconnect.
	// It takes milliseconds; the margin is for a loaded 2-core machine.
	rtActDeadline = 15 * time.Second
	// rtReadyDeadline bounds a daemon's start-up: policy load and first reconcile.
	rtReadyDeadline = 20 * time.Second
	// rtDockerdReloadDeadline bounds dockerd's handling of SIGHUP.
	rtDockerdReloadDeadline = 20 * time.Second
)

// MESSAGE_IDs the tests filter on, copied rather than imported from daemon/: SREs' filters
// depend on these exact values, so a change there must fail here.
const (
	midActionTaken  = "7c8e982039f1450dbce9a0e2f612b68a"
	midWouldAct     = "668fa933e1a941c29710f7a5d45f3c82"
	midBlocked      = "3200d7a028b349449e396b19d51742a6"
	midPolicyLoaded = "f502ef608d7c4b22b87f111f60c2546d"
	midStarted      = "86b70b17b49b40deaa40068acfd22c57"

	midRuntimeConnected    = "c79fbfa9afc24b5f8b0d3ba6bd2301f3"
	midRuntimeDisconnected = "82e3253dbd0844049a88d072592d7394"
)

// rtDaemon is a running `pullguard daemon` that logs to journald.
type rtDaemon struct {
	*Pullguard
	// since is when it was started: journald keeps entries across runs and PIDs are reused,
	// so only the entries of its PID written after this are its own.
	since time.Time
}

// startRtDaemon starts `pullguard daemon --policy policyPath --log-target journald args...`
// and waits until it reports that it started (the policy is loaded and each runtime's first
// reconcile is done).
func startRtDaemon(t testing.TB, policyPath string, args ...string) *rtDaemon {
	t.Helper()
	since := time.Now()
	p := StartPullguard(t, append([]string{"daemon", "--policy", policyPath, "--log-target", "journald"}, args...)...)
	d := &rtDaemon{Pullguard: p, since: since}
	d.waitEntries(t, rtReadyDeadline, 1, "MESSAGE_ID="+midStarted)
	return d
}

// entries are the daemon's journal entries matching matches, oldest first.
func (d *rtDaemon) entries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	all := JournalEntries(t, append([]string{"_PID=" + strconv.Itoa(d.PID())}, matches...)...)
	since := d.since.Add(-time.Second).UnixMicro() // one clock, but be lenient
	return slices.DeleteFunc(all, func(e map[string]string) bool {
		ts, err := strconv.ParseInt(e["__REALTIME_TIMESTAMP"], 10, 64)
		return err != nil || ts < since
	})
}

// waitEntries waits until at least n of the daemon's entries match and returns them all.
func (d *rtDaemon) waitEntries(t testing.TB, deadline time.Duration, n int, matches ...string) []map[string]string {
	t.Helper()
	var got []map[string]string
	Eventually(t, deadline, func() (bool, string) {
		got = d.entries(t, matches...)
		return len(got) >= n, fmt.Sprintf("%d journal entries of pullguard (pid %d) match %q, want %d; its output:\n%s",
			len(got), d.PID(), matches, n, d.Output())
	})
	return got
}

// signal sends sig to the daemon.
func (d *rtDaemon) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to pullguard: %v", sig, err)
	}
}

// rtRequireFields fails the test for each field of want that entry does not hold with that value.
func rtRequireFields(t testing.TB, entry map[string]string, want map[string]string) {
	t.Helper()
	for field, value := range want {
		if got, ok := entry[field]; !ok || got != value {
			t.Errorf("journal entry %s = %q, want %q (MESSAGE: %s)", field, got, value, entry["MESSAGE"])
		}
	}
}

// startActivatedPullguard starts pullguard the way a systemd socket unit does: from
// systemd-socket-activate, which listens on socket itself and, at the first connection,
// execs pullguard (same PID) with the listening socket passed as fd 3 (LISTEN_FDS=1).
// pullguard is stopped, as by StartPullguard, when the test ends.
func startActivatedPullguard(t testing.TB, socket string, args ...string) *Pullguard {
	t.Helper()
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatalf("systemd-socket-activate (package systemd) is not installed: %v", err)
	}
	argv := append([]string{"--listen=" + socket, BuildPullguard(t)}, args...)
	p := &Pullguard{
		cmd:  exec.Command("systemd-socket-activate", argv...),
		out:  &syncBuffer{},
		done: make(chan struct{}),
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting systemd-socket-activate: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		err := p.Stop(t)
		if t.Failed() || err != nil {
			t.Logf("systemd-socket-activate %s (exit: %v), output:\n%s", strings.Join(argv, " "), err, p.Output())
		}
	})
	Eventually(t, 10*time.Second, func() (bool, string) {
		fi, err := os.Stat(socket)
		return err == nil && fi.Mode().Type() == os.ModeSocket,
			fmt.Sprintf("systemd-socket-activate does not listen on %s; output:\n%s", socket, p.Output())
	})
	return p
}

// rtSocketDir is a temporary directory with a path short enough for unix sockets (t.TempDir()
// can exceed their 107 bytes), removed when the test ends.
func rtSocketDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dockerPluginDir is where dockerd looks for plugin sockets by name (NAME.sock): the path ops
// use for pullguard's plugin. It is host-wide, so tests use unique plugin names.
const dockerPluginDir = "/run/docker/plugins"

// dockerPluginSpecDir is where dockerd looks for plugin spec files (NAME.spec holding the
// socket's address), for a socket anywhere else.
const dockerPluginSpecDir = "/etc/docker/plugins"

// authzPluginName is a plugin name no other test or run uses.
func authzPluginName() string {
	return "pgtest-authz-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// authzSocket is the socket path dockerd finds the plugin NAME at, removed when the test ends
// (pullguard removes it itself on a clean exit).
func authzSocket(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(dockerPluginDir, name+".sock")
	t.Cleanup(func() { os.Remove(path) })
	return path
}

// writeAuthzSpec makes dockerd find the plugin NAME at socket, through a spec file that is
// removed when the test ends.
func writeAuthzSpec(t testing.TB, name, socket string) {
	t.Helper()
	created := false
	if _, err := os.Stat(dockerPluginSpecDir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dockerPluginSpecDir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dockerPluginSpecDir, name+".spec")
	if err := os.WriteFile(spec, []byte("unix://"+socket+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(spec)
		if created {
			os.Remove(dockerPluginSpecDir) // only if empty
		}
	})
}

// enableAuthzPlugin makes the environment's dockerd consult the authorization plugin NAME for
// every API request, and turns it off again when the test ends. The plugin must be answering
// already: dockerd 20.10 exits when a plugin it is told to use cannot be reached. Call it after
// starting pullguard, so that the plugin is turned off before pullguard stops (cleanups run
// last-in first-out): a configured plugin that is gone makes every API call fail after ~30 s
// of retries, which would wedge every later test.
func enableAuthzPlugin(t testing.TB, e *Env, name string) {
	t.Helper()
	setAuthzPlugins(t, e, []string{name})
	t.Cleanup(func() { setAuthzPlugins(t, e, []string{}) })
}

// setAuthzPlugins sets dockerd's "authorization-plugins" in its daemon.json and makes it reload
// the file (SIGHUP), waiting until it has: dockerd 20.10 applies the list before it logs
// "Reloaded configuration".
func setAuthzPlugins(t testing.TB, e *Env, names []string) {
	t.Helper()
	path := filepath.Join(e.Dir, "docker", "daemon.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("dockerd's configuration: %v", err)
	}
	cfg := map[string]any{}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfg["authorization-plugins"] = names
	b, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(e.Dir, "logs", "dockerd.log")
	offset := rtFileSize(t, logPath)
	pid := rtDockerdPID(t, e)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to dockerd (%d): %v", pid, err)
	}
	Eventually(t, rtDockerdReloadDeadline, func() (bool, string) {
		tail := rtReadFrom(t, logPath, offset)
		if i := strings.Index(tail, "Error validating authorization plugin"); i >= 0 {
			t.Fatalf("dockerd refused authorization-plugins %q: %s", names, rtFirstLine(tail[i:]))
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("dockerd (%d) exited on reloading authorization-plugins %q; its log:\n%s", pid, names, tail)
		}
		return strings.Contains(tail, "Reloaded configuration"),
			fmt.Sprintf("dockerd has not reloaded its configuration (authorization-plugins %q); its log since SIGHUP:\n%s", names, tail)
	})
}

func rtDockerdPID(t testing.TB, e *Env) int {
	t.Helper()
	b, err := os.ReadFile(e.vars["DOCKERD_PID_FILE"])
	if err != nil {
		t.Fatalf("dockerd's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dockerd's pid file: %v", err)
	}
	return pid
}

func rtFileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func rtReadFrom(t testing.TB, path string, offset int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rtFirstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// rawDocker sends hand-made HTTP requests over a unix socket: to the environment's dockerd,
// for what the docker CLI never sends (a urlencoded body) and for measuring single requests,
// or to the plugin's socket as dockerd would.
type rawDocker struct {
	c *http.Client
}

func newRawDocker(t testing.TB, e *Env) *rawDocker {
	t.Helper()
	sock, ok := strings.CutPrefix(e.DockerHost, "unix://")
	if !ok {
		t.Fatalf("DOCKER_HOST %s is not a unix socket", e.DockerHost)
	}
	return newRawUnix(t, sock)
}

func newRawUnix(t testing.TB, sock string) *rawDocker {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawDocker{c: &http.Client{Transport: tr, Timeout: commandTimeout}}
}

// rawResponse is a dockerd answer: its status and, for errors, its message.
type rawResponse struct {
	Status  int
	Body    string
	Message string // the "message" of an error body
}

// do sends one request; headers are sent in order, so a name may repeat.
func (r *rawDocker) do(t testing.TB, method, uri string, body []byte, headers ...[2]string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, "http://docker"+uri, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for _, h := range headers {
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	resp, err := r.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, uri, err)
	}
	out := rawResponse{Status: resp.StatusCode, Body: string(b)}
	var msg struct{ Message string }
	if json.Unmarshal(b, &msg) == nil {
		out.Message = msg.Message
	}
	return out
}

// sampleQuantile is the q-quantile (0 < q <= 1) of sorted samples, by the nearest-rank method.
func sampleQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func rtMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func rtMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rtRequireBenchEnv is RequireEnv for benchmarks.
func rtRequireBenchEnv(b *testing.B) *Env {
	b.Helper()
	if theEnv == nil {
		b.Skip(skipReason)
	}
	b.Cleanup(func() { theEnv.Reset(b) })
	return theEnv
}
