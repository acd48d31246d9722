package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// reconcileBenchObjects is how many image records and containers BenchmarkContainerdReconcile
// puts into one namespace; reconcileBenchRuns how many reconciles it times.
const (
	reconcileBenchObjects = 1000
	reconcileBenchRuns    = 20
)

// BenchmarkContainerdReconcile: one reconcile of a namespace with 1,000 image records and
// 1,000 containers (no tasks), each container judged by the content its snapshot was made
// from. It times `pullguard scan` (the reconcile, dry run) end to end, reconcileBenchRuns
// times, with containerd's caches warm. With PULLGUARD_BASELINE_BIN set to another build of
// pullguard, that build is timed in alternate turns, for a before/after in the same run.
func BenchmarkContainerdReconcile(b *testing.B) {
	ForEachContainerdBench(b, func(b *testing.B, e *Env) {
		const ns = "default"
		allowed := e.Ref("approved/busybox:1.0")
		ctrPull(b, e, ns, allowed)
		c, err := client.New(e.ContainerdAddress)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := namespaces.WithNamespace(context.Background(), ns)
		img, err := c.GetImage(ctx, allowed)
		if err != nil {
			b.Fatal(err)
		}
		for i := 1; i < reconcileBenchObjects; i++ {
			rec := img.Metadata()
			rec.Name = e.Ref(fmt.Sprintf("approved/bench-%04d:1", i))
			if _, err := c.ImageService().Create(ctx, rec); err != nil {
				b.Fatal(err)
			}
		}
		for i := range reconcileBenchObjects {
			id := fmt.Sprintf("pgbench-%04d", i)
			if _, err := c.NewContainer(ctx, id, client.WithImageName(allowed), client.WithNewSnapshot(id, img),
				client.WithNewSpec(oci.WithImageConfig(img))); err != nil {
				b.Fatal(err)
			}
		}
		b.Cleanup(func() {
			for i := range reconcileBenchObjects {
				if ctr, err := c.LoadContainer(ctx, fmt.Sprintf("pgbench-%04d", i)); err == nil {
					_ = ctr.Delete(ctx, client.WithSnapshotCleanup)
				}
			}
			list, _ := c.ImageService().List(ctx)
			for _, r := range list {
				_ = c.ImageService().Delete(ctx, r.Name, images.SynchronousDelete())
			}
		})
		policyPath := WritePolicy(b, "", policyWithRunning(e, "enforce", "keep"))
		bins := map[string]string{"after": BuildPullguard(b)}
		if base := os.Getenv("PULLGUARD_BASELINE_BIN"); base != "" {
			bins["before"] = base
		}
		times := map[string][]time.Duration{}
		b.ResetTimer()
		for range reconcileBenchRuns {
			for _, which := range []string{"before", "after"} {
				bin, ok := bins[which]
				if !ok {
					continue
				}
				cmd := exec.Command(bin, "scan", "--policy", policyPath, "--docker-host", "none",
					"--containerd-address", e.ContainerdAddress, "--output", "json")
				cmd.Env = e.Environ()
				start := time.Now()
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("%s scan: %v\n%s", which, err, out)
				}
				times[which] = append(times[which], time.Since(start))
			}
		}
		b.StopTimer()
		for _, which := range []string{"before", "after"} {
			lat := times[which]
			if len(lat) == 0 {
				continue
			}
			p50, p99 := percentile(lat, 50), percentile(lat, 99)
			b.ReportMetric(millis(p50), which+"-p50-ms")
			b.ReportMetric(millis(p99), which+"-p99-ms")
			b.Logf("%s: reconcile of %d records and %d containers: p50 %v, p99 %v, max %v (%d runs)",
				which, reconcileBenchObjects, reconcileBenchObjects, p50, p99, slices.Max(lat), len(lat))
		}
	})
}
