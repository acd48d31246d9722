package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// notifySocket listens where $NOTIFY_SOCKET points, as systemd does.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:n])
}

func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestNotifier(t *testing.T) {
	c := notifySocket(t)
	n := &Notifier{}
	tests := map[string]struct {
		send func() error
		want string
	}{
		"ready with status":        {func() error { return n.Ready("enforcing: docker, containerd") }, "READY=1\nSTATUS=enforcing: docker, containerd"},
		"ready":                    {func() error { return n.Ready("") }, "READY=1"},
		"stopping":                 {n.Stopping, "STOPPING=1"},
		"status":                   {func() error { return n.Status("reconnecting to docker") }, "STATUS=reconnecting to docker"},
		"status stays on one line": {func() error { return n.Status("a\nREADY=1") }, "STATUS=a READY=1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatal(err)
			}
			if got := readNotify(t, c); got != tc.want {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotifierReloading(t *testing.T) {
	// Type=notify-reload wants RELOADING=1 with the monotonic time in the
	// same message.
	c := notifySocket(t)
	before := monotonicUsec(t)
	if err := (&Notifier{}).Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	lines := strings.Split(readNotify(t, c), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("sent %q, want RELOADING=1 and MONOTONIC_USEC=", lines)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d, not between %d and %d (CLOCK_MONOTONIC)", usec, before, after)
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := &Notifier{}
	if err := n.Ready("x"); err != nil {
		t.Errorf("Ready outside systemd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := n.RunWatchdog(ctx); err != nil || time.Since(start) > time.Second {
		t.Errorf("RunWatchdog without a watchdog: %v after %s, want nil at once", err, time.Since(start))
	}
}

func TestNotifierSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := (&Notifier{}).Ready("x"); err == nil {
		t.Error("Ready to a missing socket returned no error")
	}
}

func TestRunWatchdog(t *testing.T) {
	c := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100ms: pings every 50ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var healthy atomic.Bool
	healthy.Store(true)
	log, hook := logtest.NewNullLogger()
	n := &Notifier{Log: log, Healthy: func() error {
		if healthy.Load() {
			return nil
		}
		return errors.New("docker event loop stuck for 2m")
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.RunWatchdog(ctx) }()

	start := time.Now()
	for i := 0; i < 3; i++ {
		if got := readNotify(t, c); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: %q, want WATCHDOG=1", i, got)
		}
	}
	// Three pings, the first at once: about 100ms, well within a 100ms
	// watchdog each.
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("3 pings took %s", el)
	}

	// Unhealthy: pings stop, so systemd restarts the daemon.
	healthy.Store(false)
	// At most one ping was already on its way.
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Millisecond))
	buf := make([]byte, 64)
	_, _ = c.Read(buf)
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Errorf("pinged %q while unhealthy", buf[:n])
	}
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "no longer pinging") {
		t.Errorf("unhealthy not logged: %v", e)
	}
	healthy.Store(true)
	if got := readNotify(t, c); got != "WATCHDOG=1" {
		t.Errorf("after recovery: %q, want WATCHDOG=1", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunWatchdog: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after cancel")
	}
}

func TestRunWatchdogOtherPID(t *testing.T) {
	// WATCHDOG_PID names another process (a parent's watchdog): not ours.
	notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := (&Notifier{}).RunWatchdog(ctx); err != nil || ctx.Err() != nil {
		t.Errorf("RunWatchdog with another process's watchdog: %v, %v; want nil at once", err, ctx.Err())
	}
}
