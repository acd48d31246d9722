package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Guard is one runtime guard the daemon runs (Docker's, containerd's, the
// authorization plugin). Declared here, where it is used; each guard
// package satisfies it.
type Guard interface {
	// Name is the runtime it guards, for logs and the status line.
	Name() string
	// Run follows the runtime until ctx is done; it returns nil then, and
	// never because the runtime went away.
	Run(ctx context.Context) error
	// RequestReconcile asks for every image and container to be judged
	// again (after a policy reload). It must not block.
	RequestReconcile()
	// FirstPass is closed once the first connection attempt is over:
	// reconciled, or the runtime was unreachable.
	FirstPass() <-chan struct{}
}

// GuardFactory builds the guards once the policy and the reporter exist.
type GuardFactory func(policies enforcer.PolicySource, rep enforcer.Reporter) ([]Guard, error)

// Config is what `pullguard daemon` hands to Run.
type Config struct {
	PolicyPath  string
	LoadOptions policy.LoadOptions
	Log         *logrus.Logger
	Guards      GuardFactory
	// StopTimeout bounds shutdown after SIGTERM; systemd is told STOPPING=1
	// at once. Default 4 s: the promise is a stop within 5 s (the unit's
	// TimeoutStopSec is a looser 10 s).
	StopTimeout time.Duration
	// FloodWindow is passed to the Reporter (0: its default).
	FloodWindow time.Duration
	// ResyncInterval is how often every guard reconciles even when nothing
	// asked for it (0: DefaultResyncInterval; negative: never). Events are
	// delivered after the fact and actions can fail; a periodic pass is
	// what eventually mends anything an event could not.
	ResyncInterval time.Duration
	// FirstPassTimeout bounds how long READY=1 waits for the guards' first
	// reconcile. A runtime that hangs must not keep systemd, and the
	// runtimes ordered after pullguard, waiting forever.
	FirstPassTimeout time.Duration
	// SetupWarnings, when set, says what in the host's setup weakens the guard (containerd
	// will not refuse disallowed pulls before they happen, say). It is asked at start and on
	// every reload; each warning is logged, and the STATUS line says so while any holds.
	SetupWarnings func() []string
}

// DefaultResyncInterval is the default of Config.ResyncInterval.
const DefaultResyncInterval = 5 * time.Minute

// ErrStartup wraps failures to start (bad policy, bad flags): the caller
// exits with a usage status instead of being restarted in a loop.
var ErrStartup = errors.New("cannot start")

// Run is the daemon: it loads the policy (refusing to start without a valid
// one), starts the reporter, the policy watcher and the guards, tells
// systemd when it is ready, reloads on SIGHUP, and stops when ctx is done.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 4 * time.Second
	}
	if cfg.FirstPassTimeout <= 0 {
		cfg.FirstPassTimeout = 30 * time.Second
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}

	var guards []Guard
	var guardsMu sync.Mutex
	notifier := &Notifier{Log: log}
	checkSetup := func() string { return setupStatus(cfg.SetupWarnings, log) }
	// reconcileAll runs on every reload (with the new policy) and resync (nil).
	reconcileAll := func(reloaded *policy.Policy) {
		guardsMu.Lock()
		defer guardsMu.Unlock()
		if reloaded != nil {
			_ = notifier.Status(statusLine(reloaded, guards) + checkSetup())
		}
		for _, g := range guards {
			g.RequestReconcile()
		}
	}
	watcher, err := NewPolicyWatcher(PolicyWatcherConfig{
		Path: cfg.PolicyPath, LoadOptions: cfg.LoadOptions, Log: log, OnReload: reconcileAll,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	reporter := NewReporter(ReporterConfig{Log: log, Policy: watcher, FloodWindow: cfg.FloodWindow})
	built, err := cfg.Guards(watcher, reporter)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	guardsMu.Lock()
	guards = built
	guardsMu.Unlock()

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(guards)+3)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil && runCtx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// The reporter runs on its own context so that it writes what the
	// guards report while they stop, and is stopped last.
	repCtx, stopReporter := context.WithCancel(context.Background())
	repDone := make(chan struct{})
	go func() {
		defer close(repDone)
		_ = reporter.Run(repCtx)
	}()
	defer func() {
		stopReporter()
		<-repDone
	}()

	start("policy watcher", watcher.Run)
	for _, g := range guards {
		start(g.Name(), g.Run)
	}
	start("watchdog", notifier.RunWatchdog)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	waitFirstPass(ctx, guards, cfg.FirstPassTimeout, log)
	status := statusLine(watcher.Current(), guards) + checkSetup()
	_ = notifier.Ready(status)
	log.WithFields(logrus.Fields{FieldMessageID: MessageIDStarted, "status": status}).Info("pullguard started")

	var resync <-chan time.Time
	if cfg.ResyncInterval > 0 {
		t := time.NewTicker(cfg.ResyncInterval)
		defer t.Stop()
		resync = t.C
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-resync:
			reconcileAll(nil)
		case <-hup:
			_ = notifier.Reloading()
			if err := watcher.Reload(); err != nil {
				log.WithError(err).Warn("reload request: the policy in force is kept")
			}
			_ = notifier.Ready(statusLine(watcher.Current(), guards) + checkSetup())
		case err := <-errs:
			// A component that fails on its own is a bug or a broken
			// environment: stop, and let systemd restart the daemon.
			runErr = err
			break loop
		}
	}

	_ = notifier.Stopping()
	log.WithField(FieldMessageID, MessageIDStopping).Info("pullguard stopping")
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.StopTimeout):
		log.Warn("components did not stop in time; exiting anyway")
	}
	return runErr
}

func waitFirstPass(ctx context.Context, guards []Guard, timeout time.Duration, log *logrus.Logger) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, g := range guards {
		select {
		case <-g.FirstPass():
		case <-ctx.Done():
			return
		case <-deadline.C:
			log.WithField("runtime", g.Name()).Warn("first reconcile is taking long; reporting ready anyway, it goes on in the background")
			return
		}
	}
}

func statusLine(p *policy.Policy, guards []Guard) string {
	names := make([]string, len(guards))
	for i, g := range guards {
		names[i] = g.Name()
	}
	allow, deny := p.Counts()
	return fmt.Sprintf("%s mode, policy %s (%d allow, %d deny rules), guarding %s",
		p.Mode, p.Hash, allow, deny, strings.Join(names, ", "))
}

// setupStatus logs each setup warning and returns what the STATUS line adds for them.
func setupStatus(check func() []string, log *logrus.Logger) string {
	if check == nil {
		return ""
	}
	ws := check()
	for _, w := range ws {
		log.Warn(w)
	}
	if len(ws) == 0 {
		return ""
	}
	return "; WARNING: " + strings.Join(ws, "; ")
}
