package docker

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// BenchmarkTagBurst: a burst of N tag events on one image, half of them
// disallowed names, from the first event read to the last name removed.
// Linear in the burst means the same ns/event at every N: the merging
// queue makes the burst a few passes over the image instead of N.
func BenchmarkTagBurst(b *testing.B) {
	for _, n := range []int{50, 200, 800} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			p := testPolicy(b, policy.ModeEnforce, policy.RunningKeep)
			log := logrus.New()
			log.SetOutput(io.Discard)
			var total time.Duration
			passes := 0
			for b.Loop() {
				f := newFake()
				f.addImage(id(1), "reg.example/approved/base:1")
				g := New(f, enforcertest.NewPolicies(p), &enforcertest.Recorder{}, log, WithClock(func() time.Time { return testNow }))
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- g.Run(ctx) }()
				s := f.stream(b)
				<-g.FirstPass()
				events := make([]Event, n)
				for i := range n {
					name := fmt.Sprintf("reg.example/approved/app:%d", i)
					if i%2 == 1 {
						name = fmt.Sprintf("reg.example/evil/app:%d", i)
					}
					events[i] = f.tag(id(1), name)
				}
				f.mu.Lock()
				before := f.inspectsByID
				f.mu.Unlock()
				start := time.Now()
				s.send(b, events...)
				s.send(b, Event{Type: "marker"})
				<-g.loop.Idle()
				total += time.Since(start)
				f.mu.Lock()
				passes += f.inspectsByID - before
				f.mu.Unlock()
				cancel()
				<-done
				if got := len(f.names(id(1))); got != 1+n/2 {
					b.Fatalf("%d names left, want %d", got, 1+n/2)
				}
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/float64(n), "ns/event")
			// Passes over the image per event: below 1 when events merge.
			b.ReportMetric(float64(passes)/float64(b.N)/float64(n), "passes/event")
		})
	}
}
