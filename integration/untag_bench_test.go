package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
			names := make([]string, untagNames)
			for i := range names {
				names[i] = e.Ref(fmt.Sprintf("evil/untag:%d-%d", c, i))
			}
			sideBySide(b, names, 8, func(name string) error {
				_, err := api.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: name})
				return err
			})
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
