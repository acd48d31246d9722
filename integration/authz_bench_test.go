package integration

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/integration/internal/floorplugin"
)

// authzBenchRequests is the least number of requests measured per case and plugin state.
const authzBenchRequests = 2000

// authzBenchWarmup requests precede each measured run, unmeasured: connections, caches.
const authzBenchWarmup = 100

// BenchmarkAuthzAddedLatency measures the latency pullguard's authorization plugin adds to
// Docker API requests: the same requests to the same dockerd, one after another over one
// keep-alive connection, with the plugin off and then on (dockerd reloads daemon.json between
// the two). Cases:
//
//   - GET-ping and GET-containers (docker ps): the common requests, which the plugin allows
//     without policy work (dockerd still calls it twice, AuthZReq and AuthZRes). Not
//     GET /version: dockerd 20.10 runs runc and docker-init for it, tens of milliseconds;
//   - POST-tag-allowed: a judged request that goes through (the plugin decides on the new
//     name and resolves the source image through Docker's API, a nested request);
//   - POST-create-denied: a judged request that is refused (resolve, decide, report). Off,
//     dockerd answers 404 (no such image) itself; on, the plugin answers 403 first.
//
// Each case reports p50 and p99 off and on, and p99-added-us = p99 on - p99 off (goal: ≤ 1000).
// Right before each case, the same requests measure two do-nothing plugins (floor-*: one served
// by this process; floorproc-*: the same as a process of its own, as any real plugin is), and
// the case reports what pullguard adds over what each adds (p50-added/floor, .../floorproc).
// pullguard's own share is measured too: AuthZReq calls sent straight to its socket, each
// followed by the same call to both floors'.
// At least 2,000 requests are measured per case and state, whatever b.N; run it with
// -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkAuthzAddedLatency -benchtime 1x ./integration/
func BenchmarkAuthzAddedLatency(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		name := authzPluginName()
		sock := authzSocket(b, name)
		StartDaemon(b, WritePolicy(b, "", policyWithRunning(e, "enforce", "keep")),
			"--docker-host", e.DockerHost, "--containerd-address", "none", "--authz-socket", sock)
		allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:latest")
		e.Docker(b, "pull", "--quiet", allowed)
		raw := newRawDocker(b, e)

		type request struct {
			name, method, uri string
			body              []byte
			headers           [][2]string
			statusOff         int
			statusOn          int
		}
		cases := []request{
			{name: "GET-ping", method: "GET", uri: "/_ping", statusOff: 200, statusOn: 200},
			{name: "GET-containers", method: "GET", uri: e.Engine.APIPath + "/containers/json?all=1", statusOff: 200, statusOn: 200},
			{name: "POST-tag-allowed", method: "POST",
				uri:       e.Engine.APIPath + "/images/" + allowed + "/tag?" + url.Values{"repo": {e.Ref("approved/busybox")}, "tag": {"bench"}}.Encode(),
				statusOff: 201, statusOn: 201},
			{name: "POST-create-denied", method: "POST", uri: e.Engine.APIPath + "/containers/create",
				body:      []byte(`{"Image":"` + evil + `","Cmd":["true"]}`),
				headers:   [][2]string{{"Content-Type", "application/json"}},
				statusOff: 404, statusOn: 403},
		}
		measure := func(b *testing.B, r request, n, status int) []time.Duration {
			b.Helper()
			lat := make([]time.Duration, 0, n)
			for i := range authzBenchWarmup + n {
				start := time.Now()
				resp := raw.do(b, r.method, r.uri, r.body, r.headers...)
				took := time.Since(start)
				if resp.Status != status {
					b.Fatalf("%s %s: status %d, want %d: %s", r.method, r.uri, resp.Status, status, resp.Body)
				}
				if i >= authzBenchWarmup {
					lat = append(lat, took)
				}
			}
			slices.Sort(lat)
			return lat
		}

		// The floor: a plugin that allows everything without reading the
		// request, in this process. What it adds is the cost of dockerd's two
		// plugin calls per request on this machine, which no plugin avoids.
		floorName := name + "-floor"
		floorSock := filepath.Join(b.TempDir(), "floor.sock")
		serveFloorPlugin(b, floorSock)
		writeAuthzSpec(b, floorName, floorSock)
		// The same plugin as a process of its own, as every real plugin
		// (pullguard too) is: dockerd's call then wakes another process,
		// while the in-process floor answers from the benchmark's own,
		// already running one.
		procName := name + "-floorproc"
		procSock := filepath.Join(b.TempDir(), "floorproc.sock")
		startFloorProcess(b, procSock)
		writeAuthzSpec(b, procName, procSock)

		// pullguard's own share: the plugin calls dockerd makes, sent straight
		// to its socket, each followed by the same call to the floor's.
		plugin, floor, proc := newRawUnix(b, sock), newRawUnix(b, floorSock), newRawUnix(b, procSock)
		for _, c := range []struct{ name, body string }{
			{"plugin-AuthZReq-ping", `{"RequestMethod":"GET","RequestUri":"/_ping"}`},
			{"plugin-AuthZReq-pull-denied", `{"RequestMethod":"POST","RequestUri":"` + e.Engine.APIPath + `/images/create?fromImage=` +
				url.QueryEscape(evil) + `","RequestHeaders":{"Content-Length":"0"}}`},
		} {
			b.Run(c.name, func(b *testing.B) {
				r := request{method: "POST", uri: "/AuthZPlugin.AuthZReq", body: []byte(c.body),
					headers: [][2]string{{"Content-Type", "application/json"}}}
				call := func(u *rawDocker) time.Duration {
					start := time.Now()
					resp := u.do(b, r.method, r.uri, r.body, r.headers...)
					took := time.Since(start)
					if resp.Status != 200 || !strings.Contains(resp.Body, `"Allow"`) {
						b.Fatalf("AuthZReq: status %d: %s", resp.Status, resp.Body)
					}
					return took
				}
				var lat, floorLat, procLat []time.Duration
				for i := range authzBenchWarmup + max(b.N, authzBenchRequests) {
					p, f, q := call(plugin), call(floor), call(proc)
					if i >= authzBenchWarmup {
						lat, floorLat, procLat = append(lat, p), append(floorLat, f), append(procLat, q)
					}
				}
				p50, p99 := percentile(lat, 50), percentile(lat, 99)
				f50, f99 := percentile(floorLat, 50), percentile(floorLat, 99)
				q50, q99 := percentile(procLat, 50), percentile(procLat, 99)
				b.ReportMetric(micros(p50), "p50-us")
				b.ReportMetric(micros(p99), "p99-us")
				b.ReportMetric(micros(f50), "floor-p50-us")
				b.ReportMetric(micros(f99), "floor-p99-us")
				b.ReportMetric(micros(q50), "floorproc-p50-us")
				b.ReportMetric(micros(q99), "floorproc-p99-us")
				b.Logf("%s: %d calls: p50 %v p99 %v; floor in-process p50 %v p99 %v; floor process p50 %v p99 %v",
					c.name, len(lat), p50, p99, f50, f99, q50, q99)
			})
		}

		floorAdded := map[string][2]time.Duration{}
		procAdded := map[string][2]time.Duration{}
		// Every case, judged ones included: the floor plugin allows all, so
		// dockerd answers as it does without a plugin. Each case measures
		// the floor right before pullguard, so that both see the same load.
		for _, r := range cases {
			for _, fl := range []struct {
				prefix, plugin string
				added          map[string][2]time.Duration
			}{{"floor-", floorName, floorAdded}, {"floorproc-", procName, procAdded}} {
				b.Run(fl.prefix+r.name, func(b *testing.B) {
					n := max(b.N, authzBenchRequests)
					off := measure(b, r, n, r.statusOff)
					b.Cleanup(func() { setAuthzPlugins(b, e, []string{}) })
					setAuthzPlugins(b, e, []string{fl.plugin})
					with := measure(b, r, n, r.statusOff)
					setAuthzPlugins(b, e, []string{})
					p50, p99 := percentile(with, 50)-percentile(off, 50), percentile(with, 99)-percentile(off, 99)
					fl.added[r.name] = [2]time.Duration{p50, p99}
					b.ReportMetric(micros(p50), "p50-added-us")
					b.ReportMetric(micros(p99), "p99-added-us")
				})
			}
			b.Run(r.name, func(b *testing.B) {
				n := max(b.N, authzBenchRequests)
				off := measure(b, r, n, r.statusOff)
				on := false
				b.Cleanup(func() {
					if on { // this case failed with the plugin on: turn it off before pullguard stops
						setAuthzPlugins(b, e, []string{})
					}
				})
				on = true
				setAuthzPlugins(b, e, []string{name})
				with := measure(b, r, n, r.statusOn)
				setAuthzPlugins(b, e, []string{})
				on = false

				p50off, p99off := percentile(off, 50), percentile(off, 99)
				p50on, p99on := percentile(with, 50), percentile(with, 99)
				b.ReportMetric(micros(p50off), "p50-off-us")
				b.ReportMetric(micros(p50on), "p50-on-us")
				b.ReportMetric(micros(p99off), "p99-off-us")
				b.ReportMetric(micros(p99on), "p99-on-us")
				b.ReportMetric(micros(p50on-p50off), "p50-added-us")
				b.ReportMetric(micros(p99on-p99off), "p99-added-us")
				if f, ok := floorAdded[r.name]; ok && f[0] > 0 && f[1] > 0 {
					b.ReportMetric(float64(p50on-p50off)/float64(f[0]), "p50-added/floor")
					b.ReportMetric(float64(p99on-p99off)/float64(f[1]), "p99-added/floor")
				}
				if f, ok := procAdded[r.name]; ok && f[0] > 0 && f[1] > 0 {
					b.ReportMetric(float64(p50on-p50off)/float64(f[0]), "p50-added/floorproc")
					b.ReportMetric(float64(p99on-p99off)/float64(f[1]), "p99-added/floorproc")
				}
				b.Logf("%s: %d requests each: off p50 %v p90 %v p99 %v max %v; on p50 %v p90 %v p99 %v max %v; added p50 %v p99 %v",
					r.name, n, p50off, percentile(off, 90), p99off, off[len(off)-1],
					p50on, percentile(with, 90), p99on, with[len(with)-1], p50on-p50off, p99on-p99off)
			})
		}
	})
}

// serveFloorPlugin serves the least an authorization plugin can do: allow
// every request without reading it. The benchmark's baseline.
func serveFloorPlugin(b *testing.B, sock string) {
	b.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: floorplugin.Handler()}
	go srv.Serve(l)
	b.Cleanup(func() {
		srv.Close()
		os.Remove(sock)
	})
}

// startFloorProcess builds testdata/floorplugin and runs it on sock, as a
// process of its own, until the benchmark ends.
func startFloorProcess(b *testing.B, sock string) {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "floorplugin")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/floorplugin").CombinedOutput(); err != nil {
		b.Fatalf("building the floor plugin: %v: %s", err, out)
	}
	cmd := exec.Command(bin, sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(sock)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the floor plugin does not answer on %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
