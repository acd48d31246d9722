package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
)

// reconcileBenchObjects is how many image records and containers BenchmarkContainerdReconcile
// puts into one namespace; reconcileBenchRuns how many reconciles it times.
const (
	reconcileBenchObjects = 1000
	reconcileBenchRuns    = 10
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

// lyingStopSamples is how many lying containers BenchmarkContainerdLyingContainerStop runs
// with pullguard, and as many without it, in lyingStopRounds turns.
const (
	lyingStopSamples = 50
	lyingStopRounds  = 5
)

// containerEvents collects containerd's container and task events of one namespace by
// container ID, with containerd's own timestamps.
type containerEvents struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // container ID -> topic -> first time
}

func watchContainerEvents(b *testing.B, c *client.Client, ns string) *containerEvents {
	ce := &containerEvents{seen: map[string]map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	envs, _ := c.EventService().Subscribe(ctx, `topic~="/containers/"`, `topic~="/tasks/"`)
	go func() {
		for env := range envs {
			if env.Namespace != ns || env.Event == nil {
				continue
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				continue
			}
			var id string
			switch ev := v.(type) {
			case *eventtypes.ContainerCreate:
				id = ev.ID
			case *eventtypes.ContainerDelete:
				id = ev.ID
			case *eventtypes.TaskStart:
				id = ev.ContainerID
			case *eventtypes.TaskExit:
				id = ev.ContainerID
			default:
				continue
			}
			ce.mu.Lock()
			if ce.seen[id] == nil {
				ce.seen[id] = map[string]time.Time{}
			}
			if _, ok := ce.seen[id][env.Topic]; !ok {
				ce.seen[id][env.Topic] = env.Timestamp
			}
			ce.mu.Unlock()
		}
	}()
	return ce
}

// wait returns the time of the topic's event for id, failing after actDeadline.
func (ce *containerEvents) wait(b *testing.B, id, topic string) time.Time {
	b.Helper()
	deadline := time.Now().Add(actDeadline)
	for time.Now().Before(deadline) {
		ce.mu.Lock()
		ts, ok := ce.seen[id][topic]
		ce.mu.Unlock()
		if ok {
			return ts
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("no %s event for container %s within %v", topic, id, actDeadline)
	return time.Time{}
}

func (ce *containerEvents) has(id, topic string) bool {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	_, ok := ce.seen[id][topic]
	return ok
}

// BenchmarkContainerdLyingContainerStop: how long a lying container (disallowed content
// pulled under a lease, an allowed name in its Image field, its task created and started at
// once by internal/lyingclient) lives under pullguard: from its /tasks/start event to its
// /tasks/exit event, both stamped by containerd, when its task started at all (pullguard
// often removes the container before, at its /containers/create event: counted apart, and
// /containers/create to /containers/delete measured for every one). The baseline, in the same
// run and in alternate turns, is `ctr task kill -s SIGKILL` run by the benchmark as soon as it
// sees the /tasks/start event, with no pullguard running.
func BenchmarkContainerdLyingContainerStop(b *testing.B) {
	ForEachContainerdBench(b, func(b *testing.B, e *Env) {
		const ns = "default"
		allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")
		c, err := client.New(e.ContainerdAddress)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		evs := watchContainerEvents(b, c, ns)
		ctrPull(b, e, ns, allowed)
		policyPath := WritePolicy(b, "", policyWithRunning(e, "enforce", "keep"))

		var guarded, base, lifetime []time.Duration
		neverStarted := 0
		b.ResetTimer()
		for range lyingStopRounds {
			for range lyingStopSamples / lyingStopRounds {
				id := ctrContainerID()
				runLyingClient(b, e, ns, evil, allowed, id, false)
				start := evs.wait(b, id, "/tasks/start")
				e.Ctr(b, ns, "tasks", "kill", "--signal", "SIGKILL", id)
				base = append(base, evs.wait(b, id, "/tasks/exit").Sub(start))
				e.Ctr(b, ns, "tasks", "rm", "--force", id)
				e.Ctr(b, ns, "containers", "rm", id)
			}
			g := startContainerdGuard(b, e, policyPath)
			// Caught up once it has deleted the records a reconcile finds.
			waitCtrImageGone(b, e, ns, evil)
			for range lyingStopSamples / lyingStopRounds {
				id := ctrContainerID()
				runLyingClient(b, e, ns, evil, allowed, id, false)
				deleted := evs.wait(b, id, "/containers/delete")
				lifetime = append(lifetime, deleted.Sub(evs.wait(b, id, "/containers/create")))
				if evs.has(id, "/tasks/start") {
					guarded = append(guarded, evs.wait(b, id, "/tasks/exit").Sub(evs.wait(b, id, "/tasks/start")))
				} else {
					neverStarted++
				}
				// Its task, if one was being created meanwhile, is gone too (before the
				// guard is stopped).
				requireContainerGone(b, e, ns, id)
			}
			if err := g.Stop(b); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report := func(what string, lat []time.Duration) {
			if len(lat) == 0 {
				b.Logf("%s: no samples", what)
				return
			}
			p50, p99 := percentile(lat, 50), percentile(lat, 99)
			b.ReportMetric(millis(p50), what+"-p50-ms")
			b.ReportMetric(millis(p99), what+"-p99-ms")
			b.Logf("%s: p50 %v, p99 %v, max %v (%d samples)", what, p50, p99, slices.Max(lat), len(lat))
		}
		report("ctr-kill-start-to-exit", base)
		report("pullguard-start-to-exit", guarded)
		report("pullguard-create-to-delete", lifetime)
		b.Logf("tasks pullguard ended before they started: %d of %d", neverStarted, lyingStopSamples)
	})
}
