package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// untagNames is how many names BenchmarkDockerUntagConcurrency puts on one image each round:
// as many as TestDockerLostEventsWhileStopped makes while pullguard is stopped.
const untagNames = 1500

// BenchmarkDockerUntagConcurrency: how fast dockerd itself removes the names of one image with
// many names, sent one at a time or side by side, with no pullguard running. It is the floor of
// a reconcile after lost events (the guard removes names side by side, a bounded number at
// once): if dockerd serializes removals internally, more at once buys nothing. For each
// concurrency, untagNames names are tagged onto one allowed image and then removed
// (`docker rmi NAME`, through the API); reported per concurrency: names removed per second and
// the milliseconds one removal takes as seen by its caller, median.
func BenchmarkDockerUntagConcurrency(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		api := dockerAPI(b, e)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		source := e.Ref("approved/busybox:1.0")
		pullImage(b, ctx, api, source)
		for _, c := range []int{1, 4, 8, 16} {
			names := refsOf(e, fmt.Sprintf("evil/untag:%d-%%d", c), 0, untagNames)
			tagAll(b, ctx, api, source, names)
			began := time.Now()
			var mu sync.Mutex
			var took []time.Duration
			sideBySide(b, names, c, func(name string) error {
				t0 := time.Now()
				_, err := api.ImageRemove(ctx, name, client.ImageRemoveOptions{})
				mu.Lock()
				took = append(took, time.Since(t0))
				mu.Unlock()
				return err
			})
			wall := time.Since(began)
			rate := float64(len(names)) / wall.Seconds()
			b.ReportMetric(rate, fmt.Sprintf("names/s-c%d", c))
			b.ReportMetric(millis(percentile(took, 50)), fmt.Sprintf("rmi-p50-ms-c%d", c))
			b.Logf("concurrency %2d: %d names removed in %v, %.0f names/s; one rmi p50 %v p99 %v",
				c, len(names), wall.Round(time.Millisecond), rate,
				percentile(took, 50).Round(time.Microsecond), percentile(took, 99).Round(time.Microsecond))
		}
	})
}

// BenchmarkDockerRemoveManyNames: whether any Docker API call removes many names faster than
// one `docker rmi NAME` a name, the path a reconcile takes after lost events. With no
// pullguard running, the same run measures, per engine:
//
//   - names of one image (N names on one image that has no other name):
//     by-name-c4-N — one DELETE /images/NAME a name, 4 at once (the guard's default workers),
//     for N = 150, 500 and untagNames: dockerd's cost per name grows with the names the image
//     has; force-by-id — one DELETE /images/ID?force=1, which removes every name of the image.
//   - distinct images (untagNames images of one name each):
//     by-name-c4 — as above; force-by-id-c4 — one DELETE /images/ID?force=1 an image, 4 at
//     once; prune — one POST /images/prune?filters={"dangling":["false"],"label":[...]}.
//
// Reported: names removed per second, and dockerd's and its containerd's CPU time (user+sys)
// per name, which the machine's other load inflates less than wall time.
func BenchmarkDockerRemoveManyNames(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		api := dockerAPI(b, e)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		procs := []int{e.DockerdPID(b), e.ContainerdPID(b)}
		cpuOf := func(b *testing.B) (sum time.Duration) {
			for _, pid := range procs {
				sum += processCPU(b, pid)
			}
			return sum
		}
		measure := func(b *testing.B, what string, names int, remove func()) {
			cpu0, t0 := cpuOf(b), time.Now()
			remove()
			wall, cpu := time.Since(t0), cpuOf(b)-cpu0
			b.ReportMetric(float64(names)/wall.Seconds(), "names/s")
			b.ReportMetric(micros(cpu)/float64(names), "runtime-cpu-µs/name")
			b.Logf("%s: %d names removed in %v, %.0f names/s; dockerd and containerd CPU %v, %.0f µs a name",
				what, names, wall.Round(time.Millisecond), float64(names)/wall.Seconds(),
				cpu.Round(time.Millisecond), micros(cpu)/float64(names))
		}
		round := 0
		// oneImage imports an image and gives it n names in all.
		oneImage := func(b *testing.B, n int) (id string, names []string) {
			round++
			source := e.Ref(fmt.Sprintf("evil/many-%d:base", round))
			id = importTiny(b, ctx, api, source, fmt.Sprintf("many-names %d", round), "")
			names = refsOf(e, fmt.Sprintf("evil/many-%d:%%d", round), 0, n-1)
			tagAll(b, ctx, api, source, names)
			return id, append(names, source)
		}
		const label = "pullguard.bench.remove-many"
		// distinct imports untagNames images of one name each.
		distinct := func(b *testing.B, label string) (ids, names []string) {
			round++
			ids, names = make([]string, untagNames), refsOf(e, fmt.Sprintf("evil/distinct-%d:%%d", round), 0, untagNames)
			var mu sync.Mutex
			sideBySide(b, names, 8, func(ref string) error {
				id := importTiny(b, ctx, api, ref, "distinct "+ref, label)
				mu.Lock()
				defer mu.Unlock()
				ids[slices.Index(names, ref)] = id
				return nil
			})
			return ids, names
		}
		remove := func(b *testing.B, refs []string, force bool) func() {
			return func() {
				sideBySide(b, refs, 4, func(ref string) error {
					_, err := api.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: force})
					if err == nil {
						return nil
					}
					if _, lookup := api.ImageInspect(ctx, ref); cerrdefs.IsNotFound(lookup) {
						// dockerd 20.10, removing an image's last two names side by side:
						// both requests untag, then both delete the image, and the second
						// fails ("unrecognized image ID") though its name is gone.
						return nil
					}
					return err
				})
			}
		}
		gone := func(b *testing.B, ids []string) {
			b.Helper()
			for _, id := range ids {
				if _, err := api.ImageInspect(ctx, id); err == nil {
					b.Fatalf("image %s is still there", id)
				}
			}
		}
		for _, n := range []int{150, 500, untagNames} {
			b.Run(fmt.Sprintf("one-image/by-name-c4-%d", n), func(b *testing.B) {
				id, names := oneImage(b, n)
				measure(b, "names of one image, by name 4 at once", len(names), remove(b, names, false))
				gone(b, []string{id})
			})
		}
		b.Run("one-image/force-by-id", func(b *testing.B) {
			id, names := oneImage(b, untagNames)
			measure(b, "names of one image, one forced removal by ID", len(names), remove(b, []string{id}, true))
			gone(b, []string{id})
		})
		b.Run("distinct-images/by-name-c4", func(b *testing.B) {
			ids, names := distinct(b, "")
			measure(b, "distinct images, by name 4 at once", len(names), remove(b, names, false))
			gone(b, ids)
		})
		b.Run("distinct-images/force-by-id-c4", func(b *testing.B) {
			ids, names := distinct(b, "")
			measure(b, "distinct images, forced removal by ID 4 at once", len(names), remove(b, ids, true))
			gone(b, ids)
		})
		b.Run("distinct-images/prune", func(b *testing.B) {
			ids, names := distinct(b, label)
			measure(b, "distinct images, one prune by label", len(names), func() {
				f := client.Filters{}
				f.Add("dangling", "false")
				f.Add("label", label)
				if _, err := api.ImagePrune(ctx, client.ImagePruneOptions{Filters: f}); err != nil {
					b.Fatal(err)
				}
			})
			gone(b, ids)
		})
	})
}

// importTiny imports an image of one small file (content makes its ID) named ref, with label
// when not empty, and returns its ID.
func importTiny(b testing.TB, ctx context.Context, api *client.Client, ref, content, label string) string {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "marker", Typeflag: tar.TypeReg, Mode: 0o644,
		Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		b.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	var opts client.ImageImportOptions
	if label != "" {
		opts.Changes = []string{"LABEL " + label + "=1"}
	}
	res, err := api.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, ref, opts)
	if err == nil {
		_, err = io.Copy(io.Discard, res)
		res.Close()
	}
	if err != nil {
		b.Fatalf("importing %s: %v", ref, err)
	}
	img, err := api.ImageInspect(ctx, ref)
	if err != nil {
		b.Fatalf("inspecting %s: %v", ref, err)
	}
	return img.ID
}

// BenchmarkDockerReconcileManyNames: how long pullguard's reconcile takes to remove untagNames
// disallowed names of one image that keeps an allowed name, against dockerd removing the same
// names itself, 4 at a time (the daemon's default workers), just before in the same run. The
// names are tagged with pullguard stopped; the time is from its start to READY=1, which it
// sends once the start-up reconcile is done. Reported per engine: both times and their ratio.
func BenchmarkDockerReconcileManyNames(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		api := dockerAPI(b, e)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		approved := e.Ref("approved/busybox:1.0")
		pullImage(b, ctx, api, approved)
		names := refsOf(e, "evil/reconcile:%d", 0, untagNames)
		tagAll(b, ctx, api, approved, names)
		t0 := time.Now()
		untagAll(b, ctx, api, names, 4) // the daemon's default workers
		floor := time.Since(t0)
		tagAll(b, ctx, api, approved, names)
		t1 := time.Now()
		startDockerGuard(b, e, WritePolicy(b, "", policyYAML(e, "enforce", false)))
		took := time.Since(t1)
		img, err := api.ImageInspect(ctx, approved)
		if err != nil {
			b.Fatal(err)
		}
		if len(img.RepoTags) != 1 {
			b.Fatalf("after the reconcile the image has %d names, want 1 (%s)", len(img.RepoTags), approved)
		}
		b.ReportMetric(floor.Seconds(), "dockerd-s")
		b.ReportMetric(took.Seconds(), "pullguard-s")
		b.ReportMetric(took.Seconds()/floor.Seconds(), "ratio")
		b.Logf("%d names: dockerd removes them 4 at a time in %v; pullguard's start-up reconcile in %v (%.2f×)",
			untagNames, floor.Round(time.Millisecond), took.Round(time.Millisecond), took.Seconds()/floor.Seconds())
	})
}
