package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/internal/policygen"
)

// BenchmarkDaemonLargePolicy starts the real daemon with a 100,000-rule
// allowlist (8 MB) and no runtime to reach (a containerd socket that does
// not exist: it keeps retrying), and reports its resident memory once the
// policy is loaded and after each of three reloads (the file appended to;
// each measured once the settle period, for which the previous policy is
// kept on purpose, is over), and the most it held at any time. `pullguard policy validate` of the same
// file gives the load's own time and peak. Goals: load in 1 s with a peak
// of 150 MB; the daemon at 100 MB, and back to it after a reload.
func BenchmarkDaemonLargePolicy(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "pullguard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("building: %v\n%s", err, out)
	}
	etc := filepath.Join(dir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		b.Fatal(err)
	}
	pol := filepath.Join(etc, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policygen.Organization(100000)), 0o644); err != nil {
		b.Fatal(err)
	}

	var validates, loadCPU, loadPeak []float64
	for i := 0; i < 5; i++ {
		cmd := exec.Command(bin, "policy", "validate", pol)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("validate: %v\n%s", err, out)
		}
		validates = append(validates, time.Since(start).Seconds()*1000)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		loadCPU = append(loadCPU, float64(ru.Utime.Nano()+ru.Stime.Nano())/1e6)
		loadPeak = append(loadPeak, float64(ru.Maxrss)/1024)
	}

	var log lockedBuffer
	d := exec.Command(bin, "daemon", "--policy", pol, "--docker-host", "none",
		"--containerd-address", filepath.Join(dir, "absent.sock"), "--log-target", "stderr", "--log-format", "json",
		"--state-dir", filepath.Join(dir, "state"))
	d.Stderr = &log
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = d.Process.Kill(); _ = d.Wait() }()
	loads := func() int { return strings.Count(log.String(), "policy loaded") }
	change := func(note string) {
		f, err := os.OpenFile(pol, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(f, "# %s\n", note)
		f.Close()
	}
	// waitLoaded waits for the nth load. A change made before the daemon
	// watched the file (it may start watching late on a busy machine) is
	// not seen: after 15 s without a reload, another is made.
	waitLoaded := func(n int) {
		deadline := time.Now().Add(3 * time.Minute)
		nudged := time.Now()
		for loads() < n {
			if time.Now().After(deadline) {
				b.Fatalf("the daemon did not load the policy %d times:\n%s", n, log.String())
			}
			if n > 1 && time.Since(nudged) > 15*time.Second {
				change(fmt.Sprintf("reload %d, again", n))
				nudged = time.Now()
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Let the reload finish what follows the log line and, after a
		// reload, the settle period end: until then the previous policy is
		// held on purpose.
		wait := time.Second
		if n > 1 {
			wait += daemon.DefaultSettle
		}
		time.Sleep(wait)
	}
	waitLoaded(1)
	rss := []float64{procStatus(b, d.Process.Pid, "VmRSS")}
	for i := 2; i <= 4; i++ {
		change(fmt.Sprintf("reload %d", i))
		waitLoaded(loads() + 1)
		rss = append(rss, steadyRSS(b, d.Process.Pid))
	}
	l50, l99 := percentiles(validates)
	c50, _ := percentiles(loadCPU)
	p50, _ := percentiles(loadPeak)
	b.ReportMetric(l50, "validate-p50-ms")
	b.ReportMetric(l99, "validate-p99-ms")
	b.ReportMetric(c50, "validate-cpu-p50-ms")
	b.ReportMetric(p50, "validate-peak-MB")
	b.ReportMetric(rss[0], "daemon-loaded-MB")
	b.ReportMetric(max(rss[1], rss[2], rss[3]), "daemon-after-reload-max-MB")
	b.ReportMetric(procStatus(b, d.Process.Pid, "VmHWM"), "daemon-peak-MB")
	b.ReportMetric(0, "ns/op")
}

// steadyRSS is the resident memory once it has stopped changing (by less
// than 1 MiB over a second, within 30 s): on a busy machine, returning the
// previous policy's memory after the settle period can take a while.
func steadyRSS(tb testing.TB, pid int) float64 {
	last := procStatus(tb, pid, "VmRSS")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now := procStatus(tb, pid, "VmRSS")
		if now-last < 1 && last-now < 1 {
			return now
		}
		last = now
	}
	return last
}

// procStatus reads a memory figure (kB) of /proc/PID/status, in MiB.
func procStatus(tb testing.TB, pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, ln := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(ln, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// lockedBuffer is the daemon's log, written by the command's copying
// goroutine while the benchmark reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
