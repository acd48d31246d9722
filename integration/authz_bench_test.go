package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/integration/internal/floorplugin"
)

// authzBenchRequests is the least number of requests measured per case and plugin state.
const authzBenchRequests = 2000

// authzBenchWarmup requests precede each measured run, unmeasured: connections, caches.
const authzBenchWarmup = 100

// authzBenchRounds is how many turns the plugin states of BenchmarkAuthzAddedLatency take.
const authzBenchRounds = 5

// BenchmarkAuthzAddedLatency measures the latency pullguard's authorization plugin adds to
// Docker API requests: the same requests to the same dockerd, one after another over one
// keep-alive connection, with no plugin, with one of two do-nothing plugins, and with pullguard
// (dockerd reloads daemon.json between them). The do-nothing plugins allow every request without
// reading it: floor is served by this process, floorproc is the same as a process of its own, as
// every real plugin (pullguard too) is. The four states take turns in rounds. Cases:
//
//   - GET-ping and GET-containers (docker ps): the common requests, which the plugin allows
//     without policy work (dockerd still calls it twice, AuthZReq and AuthZRes). Not
//     GET /version: dockerd 20.10 runs runc and docker-init for it, tens of milliseconds;
//   - POST-tag-allowed: a judged request that goes through (the plugin decides on the new
//     name and finds the source image in its index, or through Docker's API, a nested request);
//   - POST-create-denied: a judged request that is refused (resolve, decide, report). Off,
//     dockerd answers 404 (no such image) itself; on, the plugin answers 403 first.
//
// Each case reports p50 and p99 with no plugin and with pullguard, what each plugin adds
// (p50-added-us = p50 with it - p50 without), pullguard's over each floor's
// (p50-added/floor, p50-added/floorproc), and the CPU time pullguard's process used per request
// in each state (its Docker guard follows the events the requests cause in all of them).
// pullguard's own share is measured too: AuthZReq calls sent straight to its socket, each
// followed by the same call to both floors'. At least 2,000 requests are measured per case and
// state, whatever b.N; run it with -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkAuthzAddedLatency -benchtime 1x ./integration/
func BenchmarkAuthzAddedLatency(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		name := authzPluginName()
		sock := authzSocket(b, name)
		pg := StartDaemon(b, WritePolicy(b, "", policyWithRunning(e, "enforce", "keep")),
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
			warmup := authzBenchWarmup / authzBenchRounds
			for i := range warmup + n {
				start := time.Now()
				resp := raw.do(b, r.method, r.uri, r.body, r.headers...)
				took := time.Since(start)
				if resp.Status != status {
					b.Fatalf("%s %s: status %d, want %d: %s", r.method, r.uri, resp.Status, status, resp.Body)
				}
				if i >= warmup {
					lat = append(lat, took)
				}
			}
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
		procPID := startFloorProcess(b, procSock)
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

		// Every case, judged ones included: the floors allow all, so dockerd
		// answers as it does without a plugin. The four states (no plugin,
		// the two floors, pullguard) take turns in rounds, in a rotating
		// order, so that the load other work puts on the machine falls on
		// all of them alike; each state's samples are pooled over the rounds.
		for _, r := range cases {
			b.Run(r.name, func(b *testing.B) {
				n := max(b.N, authzBenchRequests)
				per := (n + authzBenchRounds - 1) / authzBenchRounds
				states := []struct {
					label   string
					plugins []string
					status  int
				}{{"off", []string{}, r.statusOff}, {"floor", []string{floorName}, r.statusOff},
					{"floorproc", []string{procName}, r.statusOff}, {"on", []string{name}, r.statusOn}}
				lat := map[string][]time.Duration{}
				cpu := map[string]time.Duration{}
				// The floor process's own CPU, while it is the plugin.
				var procCPU time.Duration
				b.Cleanup(func() { setAuthzPlugins(b, e, []string{}) }) // before pullguard stops
				for round := range authzBenchRounds {
					for k := range states {
						st := states[(round+k)%len(states)]
						setAuthzPlugins(b, e, st.plugins)
						c0, f0 := processCPU(b, pg.PID()), processCPU(b, procPID)
						lat[st.label] = append(lat[st.label], measure(b, r, per, st.status)...)
						cpu[st.label] += processCPU(b, pg.PID()) - c0
						if st.label == "floorproc" {
							procCPU += processCPU(b, procPID) - f0
						}
					}
				}
				setAuthzPlugins(b, e, []string{})

				off := lat["off"]
				slices.Sort(off)
				p50off, p99off := percentile(off, 50), percentile(off, 99)
				b.ReportMetric(micros(p50off), "p50-off-us")
				b.ReportMetric(micros(p99off), "p99-off-us")
				b.ReportMetric(micros(cpu["off"])/float64(len(off)), "off-pullguard-cpu-us/req")
				b.ReportMetric(micros(procCPU)/float64(len(lat["floorproc"])), "floorproc-own-cpu-us/req")
				added := map[string][2]time.Duration{}
				for _, st := range states[1:] {
					with := lat[st.label]
					slices.Sort(with)
					a := [2]time.Duration{percentile(with, 50) - p50off, percentile(with, 99) - p99off}
					added[st.label] = a
					prefix := st.label + "-"
					if st.label == "on" {
						prefix = ""
						b.ReportMetric(micros(percentile(with, 50)), "p50-on-us")
						b.ReportMetric(micros(percentile(with, 99)), "p99-on-us")
					}
					b.ReportMetric(micros(a[0]), prefix+"p50-added-us")
					b.ReportMetric(micros(a[1]), prefix+"p99-added-us")
					// pullguard's CPU: its Docker guard following the events the
					// requests cause, and, when it is the plugin, its answers.
					b.ReportMetric(micros(cpu[st.label])/float64(len(with)), st.label+"-pullguard-cpu-us/req")
					b.Logf("%s, %s: %d requests: p50 %v p90 %v p99 %v max %v; added p50 %v p99 %v",
						r.name, st.label, len(with), percentile(with, 50), percentile(with, 90), percentile(with, 99), with[len(with)-1], a[0], a[1])
				}
				b.Logf("%s, off: %d requests: p50 %v p90 %v p99 %v max %v", r.name, len(off), p50off, percentile(off, 90), p99off, off[len(off)-1])
				on := added["on"]
				for _, fl := range []string{"floor", "floorproc"} {
					if f := added[fl]; f[0] > 0 {
						b.ReportMetric(float64(on[0])/float64(f[0]), "p50-added/"+fl)
					}
					if f := added[fl]; f[1] > 0 {
						b.ReportMetric(float64(on[1])/float64(f[1]), "p99-added/"+fl)
					}
				}
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
func startFloorProcess(b *testing.B, sock string) (pid int) {
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
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			b.Fatalf("the floor plugin does not answer on %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat, in clock ticks of 10 ms.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces; fields follow it.
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
