package integration

// Benchmarks of `pullguard daemon` on a real dockerd (issue 4), for `make bench`:
//
//	go test -run '^$' -bench . -benchtime 1x ./integration/
//
// Each benchmark measures a fixed number of samples whatever b.N is (the setup, a real
// dockerd, dominates any per-iteration cost), so -benchtime 1x runs each once.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// latencySamples is how many pulls each latency measurement takes (issue 4: at least 50),
// in latencyRounds turns.
const (
	latencySamples = 100
	latencyRounds  = 4
)

// rssGoalMiB is the idle daemon's RSS goal (issue 4).
const rssGoalMiB = 30

// BenchmarkDockerPullToRemoval: the time from dockerd's pull event for a disallowed image to
// its untag event (the reference is gone), by dockerd's own event timestamps (timeNano), over
// latencySamples pulls. The baseline, in the same run, is the floor any event watcher could
// reach: the benchmark itself removes the reference (docker rmi, through the API) as soon as
// it sees the pull event, with no pullguard running; the two take turns (latencyRounds).
// Reported: p50-ms and p99-ms for each,
// and pullguard's ratio to the baseline.
func BenchmarkDockerPullToRemoval(b *testing.B) {
	ForEachDockerBench(b, func(b *testing.B, e *Env) {
		api := dockerAPI(b, e)
		ref := e.Ref("evil/miner:latest")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()

		// The image's ID, which its untag and delete events carry.
		pullImage(b, ctx, api, ref)
		id := imageID(b, e, ref)
		e.Reset(b)
		evs := watchImageEvents(b, ctx, api)

		measure := func(remove bool, n int) []time.Duration {
			out := make([]time.Duration, 0, n)
			for range n {
				pullImage(b, ctx, api, ref)
				pulled := evs.next(b, "pull", ref)
				if remove {
					if _, err := api.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil {
						b.Fatalf("removing %s: %v", ref, err)
					}
				}
				untagged := evs.next(b, "untag", id)
				// Wait for the image to be deleted too, so that each pull is a new arrival.
				evs.next(b, "delete", id)
				out = append(out, time.Duration(untagged.TimeNano-pulled.TimeNano))
			}
			return out
		}

		// The floor and pullguard take turns, latencyRounds rounds of
		// latencySamples/latencyRounds pulls each, so that both meet the
		// same spells of load on a shared machine.
		policyPath := WritePolicy(b, "", policyYAML(e, "enforce", false))
		var base, guarded []time.Duration
		b.ResetTimer()
		for range latencyRounds {
			base = append(base, measure(true, latencySamples/latencyRounds)...)
			g := startDockerGuard(b, e, policyPath)
			guarded = append(guarded, measure(false, latencySamples/latencyRounds)...)
			if err := g.Stop(b); err != nil {
				b.Errorf("pullguard: %v", err)
			}
		}
		b.StopTimer()

		bp50, bp99 := percentile(base, 50), percentile(base, 99)
		p50, p99 := percentile(guarded, 50), percentile(guarded, 99)
		b.ReportMetric(millis(p50), "p50-ms")
		b.ReportMetric(millis(p99), "p99-ms")
		b.ReportMetric(millis(bp50), "baseline-p50-ms")
		b.ReportMetric(millis(bp99), "baseline-p99-ms")
		b.ReportMetric(millis(p50)/millis(bp50), "p50-ratio")
		b.ReportMetric(millis(p99)/millis(bp99), "p99-ratio")
		b.Logf("pull event to untag event over %d pulls: pullguard p50 %v p99 %v max %v; baseline (rmi by the watcher itself) p50 %v p99 %v max %v",
			latencySamples, p50, p99, slices.Max(guarded), bp50, bp99, slices.Max(base))
	})
}

// BenchmarkDaemonIdleRSS: the resident memory of an idle daemon after its first reconcile,
// the highest of five VmRSS readings over 2 s, in MiB and as a fraction of the 30 MiB goal:
// guarding Docker only, and Docker and containerd.
func BenchmarkDaemonIdleRSS(b *testing.B) {
	e := RequireEnv(b)
	// Something to reconcile: the seeded images, allowed and not (audit: they stay).
	for _, name := range []string{"approved/busybox:1.0", "myorg/base:1.0", "library/nginx:1.25", "evil/miner:latest"} {
		e.Docker(b, "pull", "-q", e.Ref(name))
	}
	path := WritePolicy(b, "", policyYAML(e, "audit", true))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"docker", nil},
		{"docker+containerd", []string{"--containerd-address", e.ContainerdAddress}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g := startDockerGuard(b, e, path, tc.args...)
			var peak int64
			for i := range 5 {
				time.Sleep(400 * time.Millisecond)
				kib := vmRSS(b, g.PID())
				peak = max(peak, kib)
				if i == 0 {
					b.Logf("VmRSS %d KiB", kib)
				}
			}
			if err := g.Stop(b); err != nil {
				b.Errorf("pullguard: %v", err)
			}
			mib := float64(peak) / 1024
			b.ReportMetric(mib, "RSS-MiB")
			b.ReportMetric(mib/rssGoalMiB, "RSS/goal")
		})
	}
}

// pullImage pulls ref through the API and waits for the pull to finish.
func pullImage(b *testing.B, ctx context.Context, api *client.Client, ref string) {
	b.Helper()
	resp, err := api.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err == nil {
		err = resp.Wait(ctx)
	}
	if err != nil {
		b.Fatalf("pulling %s: %v", ref, err)
	}
}

// imageEventStream is dockerd's stream of image events.
type imageEventStream struct {
	msgs <-chan events.Message
	errs <-chan error
}

func watchImageEvents(b *testing.B, ctx context.Context, api *client.Client) *imageEventStream {
	b.Helper()
	f := client.Filters{}
	f.Add("type", string(events.ImageEventType))
	// Events returns once dockerd has answered: the subscription is in place.
	res := api.Events(ctx, client.EventsListOptions{Filters: f})
	return &imageEventStream{msgs: res.Messages, errs: res.Err}
}

// next returns the next event with action and actor, skipping others.
func (s *imageEventStream) next(b *testing.B, action, actor string) events.Message {
	b.Helper()
	timeout := time.After(actDeadline)
	for {
		select {
		case m := <-s.msgs:
			if string(m.Action) == action && m.Actor.ID == actor {
				return m
			}
		case err := <-s.errs:
			b.Fatalf("docker events: %v", err)
		case <-timeout:
			b.Fatalf("no %s event for %s within %v", action, actor, actDeadline)
		}
	}
}

// percentile is the p-th percentile (0 < p <= 100) of samples, in any order, by the
// nearest-rank method; 0 when there are none. The benchmarks of all runtimes report it.
func percentile(samples []time.Duration, p int) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(samples))
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// vmRSS is the process's resident set size in KiB, from /proc/PID/status.
func vmRSS(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kib
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
