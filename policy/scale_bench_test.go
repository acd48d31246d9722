package policy

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pullguard/pullguard/internal/policygen"
)

// BenchmarkLoadLarge parses a 100,000-rule allowlist (8 MB) as a large
// organization writes it: the time, the most heap in use while parsing
// (sampled every millisecond) and the heap the loaded policy keeps. The
// goal is 1 s and 150 MB of peak for loading.
func BenchmarkLoadLarge(b *testing.B) {
	data := []byte(policygen.Organization(100000))
	var times, cpus, peaks, kept []float64
	for i := 0; i < 5; i++ { // five loads whatever -benchtime says: each takes a second
		runtime.GC()
		debug.FreeOSMemory()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}()
		cpu0 := cpuTime()
		start := time.Now()
		p, err := Parse(Source{Name: "large.yaml", Data: data})
		el := time.Since(start)
		cpus = append(cpus, (cpuTime()-cpu0).Seconds()*1000)
		close(stop)
		<-done
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(p)
		times = append(times, el.Seconds()*1000)
		peaks = append(peaks, float64(peak.Load()-min(peak.Load(), base.HeapInuse))/(1<<20))
		kept = append(kept, float64(after.HeapAlloc-min(after.HeapAlloc, base.HeapAlloc))/(1<<20))
	}
	// The floor: the YAML library reading the same file into its tree,
	// without a rule checked, indexed or kept.
	var floor []float64
	for i := 0; i < 5; i++ {
		cpu0 := cpuTime()
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, (cpuTime()-cpu0).Seconds()*1000)
	}
	f50, _ := percentiles(floor)
	b.ReportMetric(f50, "yaml-tree-cpu-ms")
	t50, t99 := percentiles(times)
	p50, _ := percentiles(peaks)
	k50, _ := percentiles(kept)
	b.ReportMetric(t50, "p50-ms/load")
	b.ReportMetric(t99, "p99-ms/load")
	c50, _ := percentiles(cpus)
	b.ReportMetric(c50, "p50-cpu-ms/load")
	b.ReportMetric(p50, "peak-heap-MB")
	b.ReportMetric(k50, "kept-heap-MB")
	b.ReportMetric(float64(len(data))/(1<<20), "policy-MB")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the process's user and system time: on a shared machine, the
// work a load costs, apart from waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
