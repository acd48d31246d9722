package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// restartImages is how many images the host of BenchmarkRestartRegistryRequests holds
// (issue 29).
const restartImages = 1000

// restartWindow is how long after a restart its registry requests are counted: the first
// minute (PULLGUARD_BENCH_WINDOW, a duration, shortens it for a quick look).
func restartWindow(b *testing.B) time.Duration {
	if v := os.Getenv("PULLGUARD_BENCH_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("PULLGUARD_BENCH_WINDOW=%q: %v", v, err)
		}
		return d
	}
	return time.Minute
}

// BenchmarkRestartRegistryRequests: a daemon restart on a containerd host holding
// restartImages images under local-images: deny, where each image's provenance is asked of the
// registry. Counted: the registry's requests (its access log) in the first minute after the
// restart, and the time from the start to READY=1 (the journal's "started" entry, after the
// first reconcile or its 30 s limit). Three restarts, in this order:
//
//   - kept: the verdicts the run before kept in the state directory (this release); then, for
//     the floor of READY, the same host under local-images: allow, where nothing is asked;
//   - paced: without kept verdicts (a new host, or a changed policy), requests paced at the
//     default --registry-qps;
//   - baseline: without kept verdicts nor pacing (--registry-qps 0), what every restart did
//     before this release. PULLGUARD_BASELINE_BIN, a pullguard binary of an earlier release,
//     measures that binary instead.
func BenchmarkRestartRegistryRequests(b *testing.B) {
	e := RequireEnv(b)
	reg := startLoggedRegistry(b)
	imgs := pushImages(b, reg, "approved/app", restartImages)
	ns := UniqueName(b)
	holdImages(b, e, ns, imgs)
	policy := WritePolicy(b, "", localDenyPolicy(reg))
	state := filepath.Join(b.TempDir(), "state")
	window := restartWindow(b)
	args := func(extra ...string) []string {
		return daemonArgs(policy, append([]string{"--docker-host", "none", "--containerd-address", e.ContainerdAddress,
			"--containerd-namespaces", ns, "--state-dir", state}, extra...)...)
	}
	// restart starts bin, and returns its requests in the window and its time to READY.
	restart := func(bin string, extra ...string) (int, time.Duration) {
		_, offset := registryRequests(b, reg, 0)
		d := startProcess(b, bin, args(extra...)...)
		ready := startedAfter(b, d, 2*time.Minute)
		time.Sleep(window - time.Since(d.since))
		reqs, _ := registryRequests(b, reg, offset)
		if err := d.Stop(b); err != nil {
			b.Fatalf("stopping: %v", err)
		}
		return len(reqs), ready
	}

	// The run before the restart: every image judged, the verdicts kept.
	bin := BuildPullguard(b)
	first := startProcess(b, bin, args()...)
	startedAfter(b, first, 2*time.Minute)
	Eventually(b, 5*time.Minute, func() (bool, string) {
		data, err := os.ReadFile(filepath.Join(state, "verdicts"))
		n := strings.Count(string(data), `"outcome":"allowed"`)
		return n == restartImages, "verdicts kept: " + strconv.Itoa(n) + " (" + fmt.Sprint(err) + ")"
	})
	if err := first.Stop(b); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	kept, keptReady := restart(bin)
	// The floor: the same host under local-images: allow, where nobody is asked anything.
	floor := startProcess(b, bin, daemonArgs(WritePolicy(b, "", strings.Replace(localDenyPolicy(reg), "deny", "allow", 1)),
		"--docker-host", "none", "--containerd-address", e.ContainerdAddress, "--containerd-namespaces", ns,
		"--state-dir", b.TempDir())...)
	floorReady := startedAfter(b, floor, 2*time.Minute)
	if err := floor.Stop(b); err != nil {
		b.Fatal(err)
	}
	forget := func() {
		if err := os.Remove(filepath.Join(state, "verdicts")); err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
	}
	forget()
	paced, pacedReady := restart(bin)
	forget()
	baseBin, baseArgs := bin, []string{"--registry-qps", "0"}
	if other := os.Getenv("PULLGUARD_BASELINE_BIN"); other != "" {
		baseBin, baseArgs = other, nil
	}
	base, baseReady := restart(baseBin, baseArgs...)
	b.StopTimer()

	b.ReportMetric(float64(kept), "requests/restart")
	b.ReportMetric(millis(keptReady), "ready-ms")
	b.ReportMetric(millis(floorReady), "floor-ready-ms")
	b.ReportMetric(float64(paced), "unkept-paced-requests/restart")
	b.ReportMetric(millis(pacedReady), "unkept-paced-ready-ms")
	b.ReportMetric(float64(base), "baseline-requests/restart")
	b.ReportMetric(millis(baseReady), "baseline-ready-ms")
	b.Logf("%d images, registry requests in the first %v after a restart: %d with kept verdicts (READY after %v; "+
		"under local-images: allow, asking nothing: %v), %d without them paced at the default rate (READY after %v), "+
		"%d without either (READY after %v)", restartImages, window, kept, keptReady, floorReady, paced, pacedReady, base, baseReady)
}
