package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// DefaultPolicyDebounce is how long the watcher waits after the last change
// before reloading: editors and `kubectl apply` make several changes to
// write one file.
const DefaultPolicyDebounce = 200 * time.Millisecond

// dropInDir is the drop-in directory's name, beside the main policy file.
const dropInDir = "policy.d"

// Reload triggers, as PULLGUARD_TRIGGER shows them.
const (
	TriggerStart      = "start"
	TriggerFileChange = "file change"
	TriggerSignal     = "reload request"
	// TriggerPolicySource: a new artifact from --policy-source.
	TriggerPolicySource = "policy source"
)

// PolicyFeed delivers the policy in place of local files the watcher would
// watch (package policysource: signed artifacts unpacked into the state
// directory). Run calls load with each new policy's main file and the
// journal fields that say where it came from; load puts it in force like
// a reload, or returns why it was rejected (and logs it).
type PolicyFeed interface {
	Run(ctx context.Context, load func(path string, origin logrus.Fields) error) error
}

// PolicyWatcherConfig configures a PolicyWatcher.
type PolicyWatcherConfig struct {
	// Path is the main policy file; drop-ins are read from policy.d/
	// beside it.
	Path        string
	LoadOptions policy.LoadOptions
	// Log defaults to logrus' standard logger.
	Log *logrus.Logger
	// OnReload is called after a new policy is in force (not for the
	// initial one, nor when a change left the content as it was). It runs
	// on the reloading goroutine while further reloads wait, so calls come
	// in order; it must not block for long nor call Reload.
	OnReload func(*policy.Policy)
	// OnReject is called, like OnReload, after a changed policy was
	// rejected; the policy in force stays.
	OnReject func(error)
	// Debounce defaults to DefaultPolicyDebounce.
	Debounce time.Duration
	// Settle is how long the policy files must stay unchanged after a
	// reload before the guards remove or stop what the previous policy
	// allowed (DefaultSettle; negative: no hold).
	Settle time.Duration
	// Feed, when set, delivers the policy instead of Path's files
	// changing; Origin are the journal fields of the policy at Path.
	Feed   PolicyFeed
	Origin logrus.Fields
}

// DefaultSettle is the default of PolicyWatcherConfig.Settle: a policy
// written in two steps a second apart must not destroy on its first half.
const DefaultSettle = 2 * time.Second

// PolicyWatcher holds the policy in force and replaces it when its files
// change, only ever with a policy that loaded and validated completely.
type PolicyWatcher struct {
	path     string
	opts     policy.LoadOptions
	log      *logrus.Logger
	onReload func(*policy.Policy)
	onReject func(error)
	debounce time.Duration

	cur atomic.Pointer[policy.Policy]

	settle time.Duration
	// prev is the policy in force before the last reload; changed is when
	// the policy files last changed (UnixNano), as seen by Run or a reload.
	prev    atomic.Pointer[policy.Policy]
	changed atomic.Int64

	mu      sync.Mutex // serializes reloads, so OnReload calls come in order
	lastErr string     // the last failure logged for a file change

	feed   PolicyFeed
	origin logrus.Fields // where the policy at path came from (feed), guarded by mu

	// watching, when set, is called once Run's watches are in place
	// (tests: edits made before that would not be seen).
	watching func()
}

var (
	_ enforcer.PolicySource  = (*PolicyWatcher)(nil)
	_ enforcer.PolicyHistory = (*PolicyWatcher)(nil)
)

// Settling implements enforcer.PolicyHistory: the policy before the last
// reload, and until when the policy is not settled (its files must stay
// unchanged for the settle period).
func (w *PolicyWatcher) Settling() (*policy.Policy, time.Time) {
	prev := w.prev.Load()
	if prev == nil || w.settle <= 0 {
		return nil, time.Time{}
	}
	return prev, time.Unix(0, w.changed.Load()).Add(w.settle)
}

// NewPolicyWatcher loads the policy and returns a watcher holding it. It
// fails if the policy cannot be loaded: the daemon must not start without a
// valid policy.
func NewPolicyWatcher(cfg PolicyWatcherConfig) (*PolicyWatcher, error) {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultPolicyDebounce
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	w := &PolicyWatcher{
		settle:   cfg.Settle,
		path:     cfg.Path,
		opts:     cfg.LoadOptions,
		log:      cfg.Log,
		onReload: cfg.OnReload,
		onReject: cfg.OnReject,
		debounce: cfg.Debounce,
		feed:     cfg.Feed,
		origin:   cfg.Origin,
	}
	p, err := policy.Load(w.path, w.opts)
	if err != nil {
		return nil, fmt.Errorf("loading policy %s: %w", w.path, err)
	}
	w.cur.Store(p)
	w.logLoaded(p, TriggerStart)
	releaseLoadMemory(p)
	return w, nil
}

// markChanged notes that the policy files changed now.
func (w *PolicyWatcher) markChanged() {
	if now := time.Now().UnixNano(); now > w.changed.Load() {
		w.changed.Store(now)
	}
}

// releaseLoadMemory hands the memory that loading a large policy used, or
// a large policy no longer held, back to the system at once: a 100,000-rule
// allowlist passes through several times its kept size while loading, and
// left to itself the runtime keeps that for minutes.
func releaseLoadMemory(p *policy.Policy) {
	if allow, deny := p.Counts(); allow+deny >= 10000 {
		debug.FreeOSMemory()
	}
}

// Current is the policy in force.
func (w *PolicyWatcher) Current() *policy.Policy { return w.cur.Load() }

// Reload re-reads the policy now (on SIGHUP). An invalid policy is logged
// and returned as the error; the policy in force stays.
func (w *PolicyWatcher) Reload() error {
	return w.reload(TriggerSignal)
}

func (w *PolicyWatcher) reload(trigger string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reloadLocked(trigger)
}

// switchTo loads the policy at path, which the feed delivered, and puts
// it in force; if it is rejected, the policy in force and its path stay.
func (w *PolicyWatcher) switchTo(path string, origin logrus.Fields) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldPath, oldOrigin := w.path, w.origin
	w.path, w.origin = path, origin
	if err := w.reloadLocked(TriggerPolicySource); err != nil {
		w.path, w.origin = oldPath, oldOrigin
		return err
	}
	return nil
}

func (w *PolicyWatcher) reloadLocked(trigger string) error {
	old := w.cur.Load()
	p, err := policy.Load(w.path, w.opts)
	if err != nil {
		w.logInvalid(err, old, trigger)
		if w.onReject != nil {
			w.onReject(err)
		}
		return fmt.Errorf("reloading policy %s: %w", w.path, err)
	}
	w.lastErr = ""
	if p.Hash == old.Hash {
		lvl := logrus.DebugLevel
		if trigger == TriggerSignal {
			lvl = logrus.InfoLevel // someone asked: say that it was done
		}
		w.log.WithFields(logrus.Fields{FieldPolicyHash: p.Hash, FieldTrigger: trigger}).
			Logf(lvl, "policy unchanged (hash %s)", p.Hash)
		releaseLoadMemory(p)
		return nil
	}
	w.markChanged()
	if w.settle > 0 {
		w.prev.Store(old)
		w.endSettleLater(old)
	}
	w.cur.Store(p)
	w.logLoaded(p, trigger)
	if w.onReload != nil {
		w.onReload(p)
	}
	releaseLoadMemory(p)
	return nil
}

// endSettleLater lets go of prev once the policy has settled: nothing
// asks for it after that, and a large policy kept for nothing would double
// the daemon's memory until the next reload. A change to the files in the
// meantime moves the end of the settle period, and a later reload replaces
// prev (and lets go of it in its turn).
func (w *PolicyWatcher) endSettleLater(prev *policy.Policy) {
	var check func()
	check = func() {
		if left := time.Until(time.Unix(0, w.changed.Load()).Add(w.settle)); left > 0 {
			time.AfterFunc(left, check)
			return
		}
		if w.prev.CompareAndSwap(prev, nil) {
			releaseLoadMemory(prev)
		}
	}
	time.AfterFunc(w.settle, check)
}

func (w *PolicyWatcher) logLoaded(p *policy.Policy, trigger string) {
	allow, deny := p.Counts()
	w.log.WithFields(w.origin).WithFields(logrus.Fields{
		FieldMessageID:   MessageIDPolicyLoaded,
		FieldPolicyHash:  p.Hash,
		FieldMode:        string(p.Mode),
		FieldDefault:     string(p.Default),
		FieldRunning:     string(p.Running),
		FieldAllowRules:  allow,
		FieldDenyRules:   deny,
		FieldPolicyFiles: strings.Join(p.Files, ","),
		FieldPolicyPath:  w.path,
		FieldTrigger:     trigger,
	}).Infof("policy loaded (%s): %s", trigger, p.Describe())
	if warn := p.TrustedRootWarning(time.Now()); warn != "" {
		w.log.WithFields(w.origin).WithField(FieldPolicyHash, p.Hash).Warn(warn)
	}
}

// logInvalid logs a rejected policy. A file change that fails the same way
// as the previous one (an editor saving its swap file next to a broken
// policy) is logged at debug only, so one mistake makes one error entry.
func (w *PolicyWatcher) logInvalid(err error, kept *policy.Policy, trigger string) {
	msg := err.Error()
	lvl := logrus.ErrorLevel
	if trigger == TriggerFileChange && msg == w.lastErr {
		lvl = logrus.DebugLevel
	}
	w.lastErr = msg
	what := "is invalid"
	if !errors.Is(err, policy.ErrInvalid) {
		what = "could not be read"
	}
	w.log.WithFields(w.origin).WithFields(logrus.Fields{
		FieldMessageID:  MessageIDPolicyInvalid,
		FieldPolicyPath: w.path,
		FieldPolicyHash: kept.Hash,
		FieldError:      msg,
		FieldTrigger:    trigger,
	}).Logf(lvl, "policy %s %s; keeping the policy in force (hash %s):\n%s", w.path, what, kept.Hash, msg)
}

// Run watches the policy's directory and policy.d/ and reloads after
// changes, until ctx is done. It watches directories rather than files so
// that every way of replacing a file is seen: rename over it, sed -i,
// delete and recreate, a Kubernetes ConfigMap's ..data symlink swap.
func (w *PolicyWatcher) Run(ctx context.Context) error {
	if w.feed != nil {
		return w.feed.Run(ctx, w.switchTo)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching policy: %w", err)
	}
	defer fw.Close()

	main, err := filepath.Abs(w.path)
	if err != nil {
		return fmt.Errorf("watching policy: %w", err)
	}
	ws := &watchSet{main: main, fw: fw, log: w.log}
	if err := ws.sync(); err != nil {
		return fmt.Errorf("watching policy: %w", err)
	}
	if w.watching != nil {
		w.watching()
	}

	// Stopped until the first change. (Since Go 1.23 Stop and Reset leave
	// no stale tick in C.)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watching policy: the file watcher stopped")
			}
			if !ws.relevant(ev.Name) {
				continue
			}
			w.log.WithField(FieldPolicyPath, ev.Name).Tracef("policy change: %s", ev)
			w.markChanged()
			// Pick up a policy.d that appeared or a symlink that moved
			// now, so that changes right after it are not missed.
			_ = ws.sync()
			debounce.Reset(w.debounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watching policy: the file watcher stopped")
			}
			// After an overflow changes may have been missed: reload.
			w.log.WithError(err).Warn("watching policy: reloading to be sure no change was missed")
			debounce.Reset(w.debounce)
		case <-debounce.C:
			_ = ws.sync()
			// The error has been logged; the policy in force stays.
			_ = w.reload(TriggerFileChange)
		}
	}
}

// watchRole says which names in a watched directory matter.
type watchRole struct {
	mainBase string          // the main policy file's name, in its directory
	dropIns  bool            // the drop-in directory: *.yaml
	targets  map[string]bool // files the main policy or a drop-in links to, in their directory
}

// watchSet keeps the watched directories in step with the file system:
// the main file's directory, policy.d/ once it exists, and the directories
// of the files the main file and the drop-ins link to. Directories are
// watched by their real path, so that a swapped symlink means a new watch.
type watchSet struct {
	main  string // absolute path of the main policy file
	fw    *fsnotify.Watcher
	log   *logrus.Logger
	roles map[string]watchRole
}

// wanted computes the directories to watch now.
func (s *watchSet) wanted() map[string]watchRole {
	roles := map[string]watchRole{}
	mainDir := realPath(filepath.Dir(s.main))
	r := roles[mainDir]
	r.mainBase = filepath.Base(s.main)
	roles[mainDir] = r
	if d := realPath(filepath.Join(filepath.Dir(s.main), dropInDir)); isDir(d) {
		r := roles[d]
		r.dropIns = true
		roles[d] = r
	}
	// A linked file is edited where it is: watch it there.
	linked := func(name, from string) {
		t, err := filepath.EvalSymlinks(name)
		if err != nil {
			return
		}
		td := filepath.Dir(t)
		if td == from {
			return
		}
		r := roles[td]
		if r.targets == nil {
			r.targets = map[string]bool{}
		}
		r.targets[filepath.Base(t)] = true
		roles[td] = r
	}
	linked(s.main, mainDir)
	dropIns, _ := policy.DropInFiles(s.main) // an unreadable policy.d fails the load, which says why
	for _, f := range dropIns {
		linked(f, realPath(filepath.Dir(f)))
	}
	return roles
}

// sync adds and removes watches to match wanted. It fails only if the
// main file's directory cannot be watched.
func (s *watchSet) sync() error {
	want := s.wanted()
	have := map[string]bool{}
	for _, p := range s.fw.WatchList() {
		have[p] = true
	}
	var firstErr error
	mainDir := realPath(filepath.Dir(s.main))
	for dir := range want {
		if have[dir] {
			continue
		}
		if err := s.fw.Add(dir); err != nil {
			if dir == mainDir {
				firstErr = err
			}
			s.log.WithError(err).WithField(FieldPolicyPath, dir).Warn("cannot watch policy directory")
			delete(want, dir)
		}
	}
	for dir := range have {
		if _, ok := want[dir]; !ok {
			_ = s.fw.Remove(dir) // it may be gone already
		}
	}
	s.roles = want
	return firstErr
}

// relevant says whether a change to name can change the policy. Editors'
// backup and swap files (policy.yaml~, .policy.yaml.swp) and unrelated
// files are ignored; names starting with ".." are Kubernetes' atomic
// writer (..data, ..2024_01_01...) swapping a ConfigMap's content.
func (s *watchSet) relevant(name string) bool {
	if _, ok := s.roles[name]; ok {
		return true // a watched directory itself went away
	}
	dir, base := filepath.Split(name)
	r, ok := s.roles[filepath.Clean(dir)]
	if !ok {
		return false
	}
	if strings.HasPrefix(base, "..") {
		return true
	}
	if r.mainBase != "" && (base == r.mainBase || base == dropInDir) {
		return true
	}
	if r.targets[base] {
		return true
	}
	return r.dropIns && !strings.HasPrefix(base, ".") && strings.HasSuffix(base, ".yaml")
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
