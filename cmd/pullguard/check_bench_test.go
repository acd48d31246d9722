package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/internal/policygen"
)

// fleetPolicy writes policygen.Fleet(n) to dir/policy.yaml.
func fleetPolicy(tb testing.TB, dir string, n int) string {
	tb.Helper()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policygen.Fleet(n)), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// fleetReferences are n mostly distinct references: allowed repositories
// at many tags, official images the policy does not allow, typosquats of
// allowed repositories and look-alike registries, so that denials with a
// resemblance hint are a good share of the work.
func fleetReferences(n, rules int) string {
	hosts := policygen.Hosts
	squats := []string{"registry.corp.exmaple.com", "ghrc.io", "quay.oi", "docker.io", "eu.mirror.example.net:5000"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		r := (i * 7919) % (rules - 2)
		if r%10 < 2 {
			r += 2 // a literal repository
		}
		h := r % len(hosts)
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			fmt.Fprintf(&b, "%s/team%d/app%d:1.%d\n", hosts[h], r/10, r, i)
		case 5, 6:
			fmt.Fprintf(&b, "docker.io/library/nginx:1.%d\n", i)
		case 7:
			fmt.Fprintf(&b, "%s/team%d/ap%d:1.%d\n", hosts[h], r/10, r, i) // a dropped letter
		case 8:
			fmt.Fprintf(&b, "%s/team%d/app%d:1.%d\n", squats[h], r/10, r, i) // a look-alike host
		default:
			fmt.Fprintf(&b, "%s/team%d/app%d-x:%d\n", hosts[h], r/10, r, i)
		}
	}
	return b.String()
}

// BenchmarkCheckCommand runs the real binary, `pullguard check --output
// json -`, over 50,000 references against a 1,000-rule policy: process
// start, policy loading, parsing, deciding and writing JSON, as a CI job
// would. The figure is the whole command's wall time divided by the number
// of references; `true` started the same way is the floor. The command's
// CPU time (user and system) is reported too: on a shared machine, wall
// time also counts the wait for a core. With PULLGUARD_CHECK_BASELINE set
// to another pullguard binary (say, one built from the main branch), that
// binary runs in turn with this one and is reported beside it.
func BenchmarkCheckCommand(b *testing.B) {
	const refs, rules = 50000, 1000
	dir := b.TempDir()
	bin := filepath.Join(dir, "pullguard")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building: %v\n%s", err, out)
	}
	baseline := os.Getenv("PULLGUARD_CHECK_BASELINE")
	pol := fleetPolicy(b, dir, rules)
	input := fleetReferences(refs, rules)
	cpu := map[string][]float64{}
	run := func(name string, args ...string) time.Duration {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(input)
		var out bytes.Buffer
		cmd.Stdout = &out
		start := time.Now()
		err := cmd.Run()
		el := time.Since(start)
		if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
			b.Fatalf("%s: %v", name, err)
		}
		if name != "true" {
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu[name] = append(cpu[name], float64(ru.Utime.Nano()+ru.Stime.Nano())/refs)
			if lines := bytes.Count(out.Bytes(), []byte("\n")); lines != refs {
				b.Fatalf("%s: %d lines of output for %d references", name, lines, refs)
			}
		}
		return el
	}
	var times, base, floor []float64
	for i := 0; i < max(b.N, 15); i++ {
		times = append(times, float64(run(bin, "check", "--policy", pol, "--output", "json", "-").Nanoseconds())/refs)
		if baseline != "" {
			base = append(base, float64(run(baseline, "check", "--policy", pol, "--output", "json", "-").Nanoseconds())/refs)
		}
		floor = append(floor, float64(run("true").Nanoseconds())/refs)
	}
	p50, p99 := percentiles(times)
	f50, _ := percentiles(floor)
	c50, c99 := percentiles(cpu[bin])
	b.ReportMetric(c50/1000, "p50-cpu-us/ref")
	b.ReportMetric(c99/1000, "p99-cpu-us/ref")
	b.ReportMetric(p50/1000, "p50-us/ref")
	b.ReportMetric(p99/1000, "p99-us/ref")
	b.ReportMetric(p50*refs/1e6, "p50-ms/command")
	b.ReportMetric(f50*refs/1e6, "floor-ms/command")
	if baseline != "" {
		b50, b99 := percentiles(base)
		bc50, bc99 := percentiles(cpu[baseline])
		b.ReportMetric(bc50/1000, "baseline-p50-cpu-us/ref")
		b.ReportMetric(bc99/1000, "baseline-p99-cpu-us/ref")
		b.ReportMetric(b50/1000, "baseline-p50-us/ref")
		b.ReportMetric(b99/1000, "baseline-p99-us/ref")
	}
	b.ReportMetric(0, "ns/op")
}

func percentiles(xs []float64) (p50, p99 float64) {
	sort.Float64s(xs)
	return xs[len(xs)/2], xs[(len(xs)*99)/100]
}
