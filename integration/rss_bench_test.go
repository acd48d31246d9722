package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// steadyGoalMiB is issue 11's goal for the idle daemon guarding Docker and containerd.
const steadyGoalMiB = 20

// steadyWait is how long BenchmarkDaemonSteadyRSS lets each daemon run before reading its RSS:
// past the Go runtime's forced collection (every 2 minutes when nothing else starts one) and
// several resyncs (--resync-interval 30s), so that the reading includes whatever of what those
// touch stays resident.
const steadyWait = 130 * time.Second

// steadyFrom is when BenchmarkDaemonSteadyRSS starts sampling each daemon's RSS every second:
// the first resync.
const steadyFrom = 30 * time.Second

// BenchmarkDaemonSteadyRSS: the resident memory of idle daemons in their steady state, not
// just after start. The daemon gives back its executable's pages once each burst of work (the
// first reconcile, a resync, a collection) has gone quiet (internal/residency), and pages come
// back as code runs again, so a reading depends on its moment. Three daemons of each kind
// (Docker, containerd, both) run side by side for steadyWait; reported: the median VmRSS of
// each kind at the end (10 s after the fourth resync, between bursts) with its range, RssAnon
// and RssFile, and the median, p99 and maximum of VmRSS sampled every second from the first
// resync on, over the three daemons, which include the bursts, and the median CPU time a
// daemon used from the first sample on, from its threads' schedstat (against the baseline's,
// what releasing costs). The binary is built as `make build` builds the one the packages ship
// (static, stripped). With PULLGUARD_BASELINE_BIN set to another build of pullguard made the
// same way (the main branch's, say), the same daemons of that binary run in the same run, and
// the ratios are reported too.
func BenchmarkDaemonSteadyRSS(b *testing.B) {
	e := RequireEnv(b)
	for _, name := range []string{"approved/busybox:1.0", "myorg/base:1.0", "library/nginx:1.25", "evil/miner:latest"} {
		e.Docker(b, "pull", "-q", e.Ref(name))
		ctrPull(b, e, "k8s.io", e.Ref(name))
	}
	path := WritePolicy(b, "", policyYAML(e, "audit", true))
	kinds := []struct {
		name string
		args []string
	}{
		{"docker", []string{"--docker-host", e.DockerHost, "--containerd-address", "none"}},
		{"containerd", []string{"--docker-host", "none", "--containerd-address", e.ContainerdAddress}},
		{"docker+containerd", []string{"--docker-host", e.DockerHost, "--containerd-address", e.ContainerdAddress}},
	}
	bins := map[string]string{"pullguard": buildShipped(b)}
	if base := os.Getenv("PULLGUARD_BASELINE_BIN"); base != "" {
		bins["baseline"] = base
	}
	type run struct {
		bin, kind string
		p         *Pullguard
	}
	var runs []run
	for bin, exe := range bins {
		for _, k := range kinds {
			for range 3 {
				args := daemonArgs(path, append(slices.Clone(k.args), "--resync-interval", "30s")...)
				runs = append(runs, run{bin, k.name, startProcess(b, exe, args...)})
			}
		}
	}
	b.ResetTimer()
	// Every second from the first resync on, each daemon's VmRSS: the reading at the end
	// falls between bursts of work, these show the bursts too.
	sampled := map[string][]float64{}
	cpuFrom := make([]time.Duration, len(runs)) // CPU time used by the first sample
	start := time.Now()
	tick := time.NewTicker(time.Second)
	for ; time.Since(start) < steadyWait; <-tick.C {
		if time.Since(start) < steadyFrom {
			continue
		}
		if len(sampled) == 0 {
			for i, r := range runs {
				cpuFrom[i] = threadsCPU(b, r.p.PID())
			}
		}
		for _, r := range runs {
			sampled[r.bin+"/"+r.kind] = append(sampled[r.bin+"/"+r.kind], memMiB(b, procStatus(b, r.p.PID()), "VmRSS"))
		}
	}
	tick.Stop()
	b.StopTimer()
	type reading struct{ rss, anon, file, cpuMs float64 }
	got := map[string][]reading{}
	for i, r := range runs {
		st := procStatus(b, r.p.PID())
		cpu := threadsCPU(b, r.p.PID()) - cpuFrom[i]
		got[r.bin+"/"+r.kind] = append(got[r.bin+"/"+r.kind],
			reading{memMiB(b, st, "VmRSS"), memMiB(b, st, "RssAnon"), memMiB(b, st, "RssFile"), float64(cpu) / float64(time.Millisecond)})
	}
	for _, r := range runs {
		if err := r.p.Stop(b); err != nil {
			b.Errorf("%s (%s): %v", r.bin, r.kind, err)
		}
	}
	median := func(rs []reading, f func(reading) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			for _, bin := range []string{"pullguard", "baseline"} {
				rs := got[bin+"/"+k.name]
				if len(rs) == 0 {
					continue
				}
				rss := median(rs, func(r reading) float64 { return r.rss })
				unit := func(s string) string {
					if bin == "baseline" {
						return "baseline-" + s
					}
					return s
				}
				b.ReportMetric(rss, unit("RSS-MiB"))
				b.ReportMetric(median(rs, func(r reading) float64 { return r.anon }), unit("anon-MiB"))
				b.ReportMetric(median(rs, func(r reading) float64 { return r.file }), unit("file-MiB"))
				over := sampled[bin+"/"+k.name]
				slices.Sort(over)
				b.ReportMetric(over[len(over)/2], unit("sampled-p50-MiB"))
				b.ReportMetric(over[len(over)*99/100], unit("sampled-p99-MiB"))
				b.ReportMetric(over[len(over)-1], unit("sampled-max-MiB"))
				b.ReportMetric(median(rs, func(r reading) float64 { return r.cpuMs }), unit("steady-CPU-ms"))
				var all []string
				for _, r := range rs {
					all = append(all, fmt.Sprintf("%.2f (anon %.2f, file %.2f; CPU %.1f ms)", r.rss, r.anon, r.file, r.cpuMs))
				}
				b.Logf("%s, %s: VmRSS MiB after %v: %s", bin, k.name, steadyWait, strings.Join(all, ", "))
			}
			if base := got["baseline/"+k.name]; len(base) > 0 {
				mine := median(got["pullguard/"+k.name], func(r reading) float64 { return r.rss })
				b.ReportMetric(mine/median(base, func(r reading) float64 { return r.rss }), "ratio")
			}
			if k.name == "docker+containerd" {
				b.ReportMetric(median(got["pullguard/"+k.name], func(r reading) float64 { return r.rss })/steadyGoalMiB, "RSS/goal")
			}
		})
	}
}

// buildShipped builds ./cmd/pullguard as `make build` does: static and stripped.
func buildShipped(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "pullguard")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/pullguard")
	cmd.Dir = ".." // the module root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/pullguard: %v\n%s", err, out)
	}
	return bin
}

// threadsCPU is the CPU time process pid's threads have used, to the nanosecond (their
// /proc/PID/task/TID/schedstat): a daemon's steady window is a few clock ticks of
// /proc/PID/stat. A thread that ended is not counted; Go keeps its threads.
func threadsCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(stats) == 0 {
		b.Fatalf("pid %d: no threads' schedstat (%v)", pid, err)
	}
	var sum time.Duration
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.Fields(string(data))[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %q: %v", f, data, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// memMiB is one of /proc/PID/status's memory lines ("VmRSS", "12345 kB"), in MiB.
func memMiB(b *testing.B, fields map[string]string, key string) float64 {
	b.Helper()
	kib, err := strconv.ParseFloat(strings.TrimSuffix(fields[key], " kB"), 64)
	if err != nil {
		b.Fatalf("%s: %q: %v", key, fields[key], err)
	}
	return kib / 1024
}
