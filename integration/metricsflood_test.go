package integration

// End-to-end test of the metrics endpoint under a connection flood (issue 22): thousands of
// idle connections to --metrics-listen must not take the daemon's file descriptors from the
// authorization plugin's socket and the journal.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/daemon/metrics"
)

// daemonNofile is the hard limit of open files the flooded daemon runs under: systemd's
// default soft limit for a service, which the packaged unit's system call filter keeps
// (it refuses setrlimit), and far less than the flood.
const daemonNofile = 1024

// floodSize is how many connections the flood tries to open: 20,000 (as in the report that
// found the problem) when this process may open that many, and always more than the
// daemon's descriptors.
func floodSize(t testing.TB) int {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	n := min(20000, int(lim.Cur)-1000) // room for the test's own files
	if n <= 2*daemonNofile {
		t.Fatalf("this process may open only %d files: too few to flood a daemon with %d", lim.Cur, daemonNofile)
	}
	return n
}

// openFlood opens up to n idle TCP connections to addr (a 127.0.0.1 address), many at a
// time, and returns those that were established. Past the listener's accept queue the
// kernel drops connection requests; those attempts time out and are not counted.
func openFlood(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		next  = make(chan struct{})
	)
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	for range 512 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := d.DialContext(context.Background(), "tcp", addr)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() { closeAll(conns) })
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// openFiles is how many file descriptors process pid has open.
func openFiles(t testing.TB, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// nofileLimits is process pid's soft and hard limit of open files.
func nofileLimits(t testing.TB, pid int) (soft, hard string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			return f[0], f[1]
		}
	}
	t.Fatalf("no open files limit in /proc/%d/limits:\n%s", pid, b)
	return "", ""
}

// startPluginDaemon starts pullguard with its authorization plugin on socket (not enabled
// in dockerd: the test asks the plugin itself, as dockerd would) and args, under a
// prefix command such as prlimit that execs it in the same process.
func startPluginDaemon(t testing.TB, e *Env, policyPath, socket string, prefix []string, args ...string) *Pullguard {
	t.Helper()
	args = daemonArgs(policyPath, append([]string{"--docker-host", e.DockerHost, "--containerd-address", "none",
		"--authz-socket", socket}, args...)...)
	var p *Pullguard
	if len(prefix) == 0 {
		p = StartPullguard(t, args...)
	} else {
		p = startProcess(t, prefix[0], append(append(prefix[1:], BuildPullguard(t)), args...)...)
	}
	p.WaitEntries(t, readyDeadline, 1, "MESSAGE_ID="+msgStarted)
	return p
}

// askPluginPull sends the plugin at socket the request dockerd sends before a pull of ref,
// and returns whether it allows it and its message.
func askPluginPull(t testing.TB, e *Env, socket, ref string) (allow bool, msg string) {
	t.Helper()
	body := `{"RequestMethod":"POST","RequestUri":"` + e.Engine.APIPath + `/images/create?fromImage=` +
		url.QueryEscape(ref) + `","RequestHeaders":{"Content-Length":"0"}}`
	resp := newRawUnix(t, socket).do(t, "POST", "/AuthZPlugin.AuthZReq", []byte(body), [2]string{"Content-Type", "application/json"})
	if resp.Status != 200 || !strings.Contains(resp.Body, `"Allow"`) {
		t.Fatalf("AuthZReq for a pull of %s: status %d: %s", ref, resp.Status, resp.Body)
	}
	return strings.Contains(resp.Body, `"Allow":true`), resp.Body
}

// TestMetricsFloodSparesThePlugin: with thousands of idle connections held open to
// --metrics-listen, more than the daemon has file descriptors, the daemon holds at most
// metrics.MaxConnections of them; the authorization plugin still answers at once and its
// refusal reaches the journal; once the connections close, a scrape succeeds. The daemon
// runs with the soft limit of open files raised to (one below) the hard one: Go does this at
// start.
func TestMetricsFloodSparesThePlugin(t *testing.T) {
	e := RequireEnv(t)
	dir := socketDir(t, "pgflood-")
	socket := filepath.Join(dir, "authz.sock")
	addr := freeAddr(t)
	path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
	limit := strconv.Itoa(daemonNofile)
	d := startPluginDaemon(t, e, path, socket, []string{"prlimit", "--nofile=256:" + limit, "--"}, "--metrics-listen", addr)

	// Go sets the soft limit one below the hard one, to tell its own change from another's.
	if soft, hard := nofileLimits(t, d.PID()); soft != strconv.Itoa(daemonNofile-1) || hard != limit {
		t.Errorf("the daemon's open files limit is soft %s, hard %s; want the soft one raised from 256 to %d, one below the hard",
			soft, hard, daemonNofile-1)
	}
	scrape(t, "http://"+addr+"/metrics")
	before := openFiles(t, d.PID())

	n := floodSize(t)
	start := time.Now()
	flood := openFlood(t, addr, n)
	t.Logf("flood: %d of %d connections established in %v; the daemon had %d files open before", len(flood), n, time.Since(start), before)
	if len(flood) <= daemonNofile {
		t.Fatalf("only %d connections established: not a flood for a daemon with %d descriptors", len(flood), daemonNofile)
	}
	// Let the daemon accept what it would.
	time.Sleep(time.Second)
	during := openFiles(t, d.PID())
	t.Logf("the daemon has %d files open during the flood", during)
	if during > before+metrics.MaxConnections+16 {
		t.Errorf("the daemon has %d files open during the flood, %d before: the metrics endpoint holds more than its %d connections",
			during, before, metrics.MaxConnections)
	}

	evil := e.Ref("evil/miner:latest")
	asked := time.Now()
	allow, msg := askPluginPull(t, e, socket, evil)
	// It takes milliseconds; a plugin waiting for a free descriptor answers after the flood's
	// connections time out, and every docker command waits as long.
	if took := time.Since(asked); took > 5*time.Second {
		t.Errorf("the plugin answered after %v during the flood", took)
	} else {
		t.Logf("the plugin answered in %v during the flood", took)
	}
	if allow {
		t.Fatalf("the plugin allowed a pull of %s: %s", evil, msg)
	}
	if !strings.Contains(msg, evil+" is not allowed") {
		t.Errorf("the plugin's refusal does not name %s: %s", evil, msg)
	}
	d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_IMAGE="+evil)
	t.Logf("the refusal was in the journal %v after the request", time.Since(asked))
	if now := openFiles(t, d.PID()); now > before+metrics.MaxConnections+16 {
		t.Errorf("the daemon has %d files open after the plugin request, %d before the flood", now, before)
	}

	closeAll(flood)
	closed := time.Now()
	defer func() { t.Logf("a scrape succeeded %v after the flood closed", time.Since(closed)) }()
	Eventually(t, metrics.ReadHeaderTimeout+actDeadline, func() (bool, string) {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			return false, fmt.Sprintf("no scrape after the flood closed: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200, "scrape after the flood: " + resp.Status
	})
}
