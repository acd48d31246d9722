package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

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

// Staller is implemented by guards that can tell when their event loop is
// wedged while their runtime is connected; the watchdog is not fed then.
type Staller interface {
	Stalled(now time.Time, limit time.Duration) bool
}

// GuardFactory builds the guards once the policy and the reporter exist.
type GuardFactory func(policies enforcer.PolicySource, rep enforcer.Reporter) ([]Guard, error)

// Config is what `pullguard daemon` hands to Run.
type Config struct {
	PolicyPath  string
	LoadOptions policy.LoadOptions
	Log         *logrus.Logger
	Guards      GuardFactory
	// Reload receives a value for every reload request (SIGHUP, which the
	// caller subscribes to: Run installs no signal handler).
	Reload <-chan struct{}
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
	// Settle is how long the policy files must be unchanged after a reload
	// before removals and stops of what the previous policy allowed go
	// ahead (0: DefaultSettle; negative: no hold).
	Settle time.Duration
	// PolicyDebounce is passed to the policy watcher (0: its default).
	PolicyDebounce time.Duration
	// SetupWarnings, when set, says what in the host's setup weakens the guard (containerd
	// will not refuse disallowed pulls before they happen, say). It is asked at start and on
	// every reload; each warning is logged, and the STATUS line says so while any holds.
	SetupWarnings func() []string
	// PolicyObserver, when set, is told of every reload's outcome.
	PolicyObserver PolicyObserver
	// PolicyFeed and PolicyOrigin are passed to the policy watcher: the
	// policy comes from a feed rather than files changing at PolicyPath.
	PolicyFeed   PolicyFeed
	PolicyOrigin logrus.Fields
	// Verdicts, when set, keeps the verdicts reached on verified evidence
	// across restarts: loaded before the guards start, written after
	// their first reconciles, every VerdictSaveInterval and at stop.
	Verdicts VerdictStore
}

// PolicyObserver is told whether each policy reload was taken or rejected
// (for metrics). Its methods must not block.
type PolicyObserver interface {
	PolicyLoaded(hash string)
	PolicyRejected(err error)
}

// DefaultResyncInterval is the default of Config.ResyncInterval.
const DefaultResyncInterval = 5 * time.Minute

// ErrStartup wraps failures to start (bad policy, bad flags): the caller
// exits with a usage status instead of being restarted in a loop.
var ErrStartup = errors.New("cannot start")

// Run is the daemon: it loads the policy (refusing to start without a valid
// one), starts the reporter, the policy watcher and the guards, tells
// systemd when it is ready, reloads on request, and stops when ctx is done
// or a component fails: the guards and the watcher first, the reporter
// last, so that what the guards report while they stop is written.
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
	notifier := &Notifier{Log: log}
	// setupNote is what the STATUS line adds for the setup warnings, asked
	// again at every reload (from the watcher's goroutine or Run's).
	var setupNote atomic.Pointer[string]
	checkSetup := func() string {
		note := setupStatus(cfg.SetupWarnings, log)
		setupNote.Store(&note)
		return note
	}
	// recheckSetup asks again without logging (the policy source logs its
	// own failures) and says whether the note changed.
	recheckSetup := func() bool {
		note := setupStatus(cfg.SetupWarnings, nil)
		old := setupNote.Swap(&note)
		return old == nil || *old != note
	}
	status := func(p *policy.Policy) string {
		note := ""
		if n := setupNote.Load(); n != nil {
			note = *n
		}
		return statusLine(p, guards) + note
	}
	// requested is set while a reload request is served: READY=1 with the
	// new status follows it, so no STATUS= of its own is sent.
	var requested atomic.Bool
	// reconcileAll runs on every reload (with the new policy) and resync (nil).
	reconcileAll := func(reloaded *policy.Policy) {
		if reloaded != nil {
			checkSetup()
			if !requested.Load() {
				_ = notifier.Status(status(reloaded))
			}
		}
		for _, g := range guards {
			g.RequestReconcile()
		}
	}
	// The watcher calls OnReload only from Run's goroutines, which start
	// after guards is set.
	onReload, onReject := reconcileAll, func(error) {}
	if o := cfg.PolicyObserver; o != nil {
		onReload = func(p *policy.Policy) { reconcileAll(p); o.PolicyLoaded(p.Hash) }
		onReject = o.PolicyRejected
	}
	watcher, err := NewPolicyWatcher(PolicyWatcherConfig{
		Path: cfg.PolicyPath, LoadOptions: cfg.LoadOptions, Log: log, OnReload: onReload,
		OnReject: onReject, Settle: cfg.Settle, Debounce: cfg.PolicyDebounce,
		Feed: cfg.PolicyFeed, Origin: cfg.PolicyOrigin,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	reporter := NewReporter(ReporterConfig{Log: log, Policy: watcher, FloodWindow: cfg.FloodWindow})
	if guards, err = cfg.Guards(watcher, reporter); err != nil {
		return fmt.Errorf("%w: %w", ErrStartup, err)
	}
	verdicts := &verdictKeeper{store: cfg.Verdicts, policy: func() string { return watcher.Current().Hash }, log: log}
	verdicts.load()
	feedChecks, _ := cfg.PolicyFeed.(FeedChecks)
	var checked <-chan struct{}
	if feedChecks != nil {
		checked = feedChecks.Checked()
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

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	group, gctx := errgroup.WithContext(runCtx)
	start := func(name string, run func(context.Context) error) {
		group.Go(func() error {
			if err := run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if gctx.Err() == nil {
				return fmt.Errorf("%s stopped by itself", name)
			}
			return nil
		})
	}
	start("policy watcher", watcher.Run)
	for _, g := range guards {
		start(g.Name(), g.Run)
	}
	notifier.Healthy = func() error { return stalled(guards) }
	group.Go(func() error { return notifier.RunWatchdog(gctx) })

	waitFirstPass(ctx, gctx, guards, cfg.FirstPassTimeout, log)
	checkSetup()
	started := status(watcher.Current())
	_ = notifier.Ready(started)
	log.WithFields(logrus.Fields{FieldMessageID: MessageIDStarted, "status": started}).Info("pullguard started")
	verdicts.save()

	var resync <-chan time.Time
	if cfg.ResyncInterval > 0 {
		t := time.NewTicker(cfg.ResyncInterval)
		defer t.Stop()
		resync = t.C
	}
	saveVerdicts := time.NewTicker(VerdictSaveInterval)
	defer saveVerdicts.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-gctx.Done():
			// A component that fails on its own is a bug or a broken
			// environment: stop, and let systemd restart the daemon.
			break loop
		case <-resync:
			reconcileAll(nil)
		case <-saveVerdicts.C:
			verdicts.save()
		case <-checked:
			if recheckSetup() {
				_ = notifier.Status(status(watcher.Current()))
			}
		case <-cfg.Reload:
			_ = notifier.Reloading()
			requested.Store(true)
			if feedChecks != nil {
				checkFeedNow(ctx, gctx, feedChecks)
				recheckSetup() // READY=1 says how the check went
			}
			if err := watcher.Reload(); err != nil {
				log.WithError(err).Warn("reload request: the policy in force is kept")
			}
			requested.Store(false)
			_ = notifier.Ready(status(watcher.Current()))
		}
	}

	_ = notifier.Stopping()
	log.WithField(FieldMessageID, MessageIDStopping).Info("pullguard stopping")
	cancel()
	done := make(chan error, 1)
	go func() { done <- group.Wait() }()
	select {
	case err = <-done:
	case <-time.After(cfg.StopTimeout):
		log.Warn("components did not stop in time; exiting anyway")
		err = nil
	}
	verdicts.save()
	return err
}

// checkFeedNow has the policy source checked at once for a reload request,
// for at most feedCheckTimeout, and not past a stop.
func checkFeedNow(ctx, gctx context.Context, f FeedChecks) {
	cctx, cancel := context.WithTimeout(gctx, feedCheckTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	f.CheckNow(cctx)
}

// stalled is the watchdog's health check: an error while a connected
// guard's event loop has made no progress for a watchdog interval.
func stalled(guards []Guard) error {
	limit := watchdogInterval()
	if limit <= 0 {
		return nil
	}
	now := time.Now()
	for _, g := range guards {
		if s, ok := g.(Staller); ok && s.Stalled(now, limit) {
			return fmt.Errorf("the %s guard's event loop made no progress for %s while connected", g.Name(), limit)
		}
	}
	return nil
}

func waitFirstPass(ctx, gctx context.Context, guards []Guard, timeout time.Duration, log *logrus.Logger) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, g := range guards {
		select {
		case <-g.FirstPass():
		case <-ctx.Done():
			return
		case <-gctx.Done():
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

// setupStatus logs each setup warning (unless log is nil) and returns
// what the STATUS line adds for them.
func setupStatus(check func() []string, log *logrus.Logger) string {
	if check == nil {
		return ""
	}
	ws := check()
	for _, w := range ws {
		if log != nil {
			log.Warn(w)
		}
	}
	if len(ws) == 0 {
		return ""
	}
	return "; WARNING: " + strings.Join(ws, "; ")
}
