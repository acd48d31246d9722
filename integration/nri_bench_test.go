package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The NRI benchmark's shape: pullguard and the do-nothing plugin take nriBenchRounds turns
// each, nriBenchCreates measured creates a turn after nriBenchWarmup unmeasured ones (a fresh
// pullguard asks the registry about the image once; that is not the steady state).
const (
	nriBenchRounds  = 6
	nriBenchCreates = 25
	nriBenchWarmup  = 3
)

// BenchmarkNRICreateContainer: what pullguard's NRI plugin adds to creating a container. The
// time of `crictl create` of an allowed image's container on containerd 2.4.2, with pullguard
// connected to NRI (enforce, local-images: deny: the image's provenance is judged, from the
// evidence cache once known) against the same with a do-nothing NRI plugin (testdata/nrifloor:
// its own process, answering CreateContainer with no adjustment) connected instead; the two
// take turns. The goal (issue 25): within 1.1x at the median and 1.25x at p95. Each pullguard
// turn ends with a disallowed image's create, which must be refused: the plugin measured is
// the one judging. Reported: p50-ms, p95-ms and the floor's, and the ratios. Run it with
// -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkNRICreateContainer -benchtime 1x ./integration/
func BenchmarkNRICreateContainer(b *testing.B) {
	e := requireModern(b)
	allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:latest")
	e.Crictl(b, "pull", allowed)
	e.Crictl(b, "pull", evil)
	_, podJSON := criPod(b, allowed)
	pod := e.Crictl(b, "runp", podJSON)
	policyPath := WritePolicy(b, "", nriPolicy(e, "enforce"))
	floorBin := buildNRIFloor(b)
	dir := b.TempDir()

	n := 0
	create := func(image string) (time.Duration, string, error) {
		n++
		ctrJSON := filepath.Join(dir, fmt.Sprintf("ctr-%d.json", n))
		writeJSON(b, ctrJSON, map[string]any{
			"metadata": map[string]any{"name": fmt.Sprintf("bench-%d", n)},
			"image":    map[string]any{"image": image},
			"command":  []string{"sleep", "300"},
			"log_path": fmt.Sprintf("bench-%d.log", n),
		})
		start := time.Now()
		id, err := e.CrictlErr(b, "create", pod, ctrJSON, podJSON)
		return time.Since(start), id, err
	}
	// measure times the creates with the plugin process pid connected, and adds the CPU time
	// that process used meanwhile to cpu.
	measure := func(who string, pid int, cpu *time.Duration) []time.Duration {
		out := make([]time.Duration, 0, nriBenchCreates)
		var before time.Duration
		for i := range nriBenchWarmup + nriBenchCreates {
			if i == nriBenchWarmup {
				before = processCPU(b, pid)
			}
			took, id, err := create(allowed)
			if err != nil {
				b.Fatalf("crictl create of the allowed %s with %s: %v", allowed, who, err)
			}
			e.Crictl(b, "rm", id)
			if i >= nriBenchWarmup {
				out = append(out, took)
			}
		}
		*cpu += processCPU(b, pid) - before
		return out
	}

	var guarded, floor []time.Duration
	var guardedCPU, floorCPU time.Duration
	b.ResetTimer()
	for range nriBenchRounds {
		g := startNRIGuard(b, e, policyPath)
		guarded = append(guarded, measure("pullguard", g.PID(), &guardedCPU)...)
		if _, _, err := create(evil); err == nil || !strings.Contains(err.Error(), "pullguard: ") {
			b.Fatalf("crictl create of the disallowed %s was not refused by pullguard: %v", evil, err)
		}
		if err := g.Stop(b); err != nil {
			b.Errorf("pullguard: %v", err)
		}
		pid, stop := startNRIFloor(b, floorBin, nriSocket(e))
		floor = append(floor, measure("the do-nothing plugin", pid, &floorCPU)...)
		stop()
	}
	b.StopTimer()

	p50, p95 := percentile(guarded, 50), percentile(guarded, 95)
	f50, f95 := percentile(floor, 50), percentile(floor, 95)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(millis(p50), "p50-ms")
	b.ReportMetric(millis(p95), "p95-ms")
	b.ReportMetric(millis(f50), "floor-p50-ms")
	b.ReportMetric(millis(f95), "floor-p95-ms")
	b.ReportMetric(millis(p50)/millis(f50), "p50-ratio")
	b.ReportMetric(millis(p95)/millis(f95), "p95-ratio")
	// CPU time is counted in ticks of 10 ms: per create it is an average over all of them.
	b.ReportMetric(micros(guardedCPU)/float64(len(guarded)), "cpu-us/create")
	b.ReportMetric(micros(floorCPU)/float64(len(floor)), "floor-cpu-us/create")
	b.Logf("crictl create over %d containers each: pullguard p50 %v p95 %v max %v, its process's CPU %v; "+
		"do-nothing plugin p50 %v p95 %v max %v, its CPU %v (goal: 1.1x, 1.25x)",
		len(guarded), p50, p95, slices.Max(guarded), guardedCPU, f50, f95, slices.Max(floor), floorCPU)
}

// buildNRIFloor builds testdata/nrifloor, the do-nothing NRI plugin.
func buildNRIFloor(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "nrifloor")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/nrifloor").CombinedOutput(); err != nil {
		b.Fatalf("building the do-nothing NRI plugin: %v: %s", err, out)
	}
	return bin
}

// startNRIFloor runs the do-nothing plugin on the NRI socket until it has registered; stop
// ends it and waits until it is gone.
func startNRIFloor(b *testing.B, bin, socket string) (pid int, stop func()) {
	b.Helper()
	cmd := exec.Command(bin, socket)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := false
	stop = func() {
		if !done {
			done = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	b.Cleanup(stop)
	registered := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		registered <- strings.TrimSpace(line) == "registered"
	}()
	select {
	case ok := <-registered:
		if !ok {
			b.Fatalf("the do-nothing NRI plugin did not register on %s", socket)
		}
	case <-time.After(readyDeadline):
		b.Fatalf("the do-nothing NRI plugin did not register on %s within %v", socket, readyDeadline)
	}
	return cmd.Process.Pid, stop
}

// writeJSON writes v as JSON to path.
func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
