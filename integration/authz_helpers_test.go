package integration

// Helpers of the authorization plugin tests and benchmark (authz_test.go, authz_bench_test.go):
// pullguard started by socket activation, the authorization plugin switched on and off in the
// environment's dockerd, and raw Docker API requests.

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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerdReloadDeadline bounds dockerd's handling of SIGHUP.
const dockerdReloadDeadline = 20 * time.Second

// startActivatedPullguard starts pullguard the way a systemd socket unit does: from
// systemd-socket-activate, which listens on socket itself and, at the first connection,
// execs pullguard (same PID) with the listening socket passed as fd 3 (LISTEN_FDS=1).
// pullguard is stopped, as by StartPullguard, when the test ends.
func startActivatedPullguard(t testing.TB, socket string, args ...string) *Pullguard {
	t.Helper()
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatalf("systemd-socket-activate (package systemd) is not installed: %v", err)
	}
	// systemd-socket-activate hands the program no environment but what --setenv names: the
	// state directory startProcess gives every pullguard is passed on, so the host's
	// /var/lib/pullguard is never made.
	p := startProcess(t, "systemd-socket-activate",
		append([]string{"--listen=" + socket, "--setenv=PULLGUARD_STATE_DIR", BuildPullguard(t)}, args...)...)
	Eventually(t, 10*time.Second, func() (bool, string) {
		fi, err := os.Stat(socket)
		return err == nil && fi.Mode().Type() == os.ModeSocket,
			fmt.Sprintf("systemd-socket-activate does not listen on %s; output:\n%s", socket, p.Output())
	})
	return p
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
	path := e.DockerConfigPath()
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

	logPath := e.DockerLogPath()
	offset := fileSize(t, logPath)
	pid := e.DockerdPID(t)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to dockerd (%d): %v", pid, err)
	}
	Eventually(t, dockerdReloadDeadline, func() (bool, string) {
		tail := readFrom(t, logPath, offset)
		if i := strings.Index(tail, "Error validating authorization plugin"); i >= 0 {
			t.Fatalf("dockerd refused authorization-plugins %q: %s", names, firstLine(tail[i:]))
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("dockerd (%d) exited on reloading authorization-plugins %q; its log:\n%s", pid, names, tail)
		}
		return strings.Contains(tail, "Reloaded configuration"),
			fmt.Sprintf("dockerd has not reloaded its configuration (authorization-plugins %q); its log since SIGHUP:\n%s", names, tail)
	})
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func readFrom(t testing.TB, path string, offset int64) string {
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

func firstLine(s string) string {
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
