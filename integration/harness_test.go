package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/policy"
)

const (
	pollInterval = 50 * time.Millisecond
	stopTimeout  = 10 * time.Second // how long pullguard gets to exit after SIGTERM

	// actDeadline is how long pullguard gets to act on an event, a reload or a reconnect.
	// It takes milliseconds; the margin is for a loaded 2-core machine.
	actDeadline = 15 * time.Second
	// gcDeadline bounds a wait for containerd's garbage collector, which
	// schedules itself (containerd_test.go).
	gcDeadline = time.Minute
	// readyDeadline bounds a daemon's start-up: policy load and first reconcile.
	readyDeadline = 20 * time.Second
)

// Eventually polls cond until it returns true, failing the test after deadline with cond's
// last message. Runtimes report asynchronously (events, journald), so tests wait for an
// outcome rather than sleep.
func Eventually(t testing.TB, deadline time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("still not the case after %v: %s", deadline, why)
		}
		time.Sleep(pollInterval)
	}
}

// UniqueName returns a name no earlier test or run has used (journald keeps entries across
// runs), for journal fields, container names and the like.
func UniqueName(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("pgtest-%s-%d", name, time.Now().UnixNano())
}

// WritePolicy writes yaml to DIR/policy.yaml (a new temporary DIR when dir is "") with mode
// 0600, and returns the path. It writes a temporary file and renames it, as configuration
// tools do, so a watching daemon never reads half a policy.
func WritePolicy(t testing.TB, dir, yaml string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "policy.yaml")
	tmp, err := os.CreateTemp(dir, ".policy-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmp.WriteString(yaml)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		t.Fatalf("writing policy: %v", err)
	}
	return path
}

// policyYAML is a policy for the seeded images: it allows approved/** (and myorg/base when
// withMyorgBase), denies evil/** by an explicit rule, and leaves the rest (library/nginx,
// the typosquat myorg-base) to the default, deny. extra lines go right after the mode.
func policyYAML(e *Env, mode string, withMyorgBase bool, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\n", mode)
	for _, line := range extra {
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "allow:\n  - image: %s/approved/**\n", e.Registry)
	if withMyorgBase {
		fmt.Fprintf(&b, "  - image: %s/myorg/base\n", e.Registry)
	}
	fmt.Fprintf(&b, "deny:\n  - image: %s/evil/**\n", e.Registry)
	return b.String()
}

// policyWithRunning is policyYAML without myorg/base, with `default: deny` and `running:
// RUNNING` spelled out: the deny rule for evil/** is on line 7, which tests expect in
// PULLGUARD_RULE.
func policyWithRunning(e *Env, mode, running string) string {
	return policyYAML(e, mode, false, "default: deny", "running: "+running)
}

// lineOf is the 1-based line of yaml holding substr, for the file:line pullguard reports.
func lineOf(t testing.TB, yaml, substr string) int {
	t.Helper()
	for i, line := range strings.Split(yaml, "\n") {
		if strings.Contains(line, substr) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the policy:\n%s", substr, yaml)
	return 0
}

// policyHash is the hash pullguard logs for the policy at path (given as the daemon was):
// computed by the policy package itself, so the test checks that the daemon loaded exactly
// what is on disk.
func policyHash(t testing.TB, path string) string {
	t.Helper()
	p, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		t.Fatalf("the test's own policy does not load: %v", err)
	}
	return p.Hash
}

// socketDir is a temporary directory with a path short enough for unix sockets (t.TempDir()
// can exceed their 107 bytes), removed when the test ends.
func socketDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// binDir holds the pullguard binary; TestMain removes it.
var binDir string

var buildPullguard = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pullguard-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "pullguard")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pullguard")
	cmd.Dir = ".." // the module root; go test runs in the package directory
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pullguard: %w\n%s", err, out)
	}
	return bin, nil
})

// BuildPullguard builds ./cmd/pullguard once per test binary and returns the binary's path;
// it fails the test with the compiler's output if that does not build.
func BuildPullguard(t testing.TB) string {
	t.Helper()
	bin, err := buildPullguard()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func removeBinDir() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// Pullguard is a running pullguard daemon.
type Pullguard struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited; err is then set
	err  error
	// since is when it was started: journald keeps entries across runs and PIDs are reused,
	// so only the entries of its PID written after this are its own (see Entries).
	since time.Time
}

// StartPullguard builds and starts pullguard with args, in the environment's variables
// (DOCKER_HOST etc.) when integration tests run. Its stdout and stderr are captured and shown
// if the test fails; it gets SIGTERM when the test ends.
func StartPullguard(t testing.TB, args ...string) *Pullguard {
	t.Helper()
	return startProcess(t, BuildPullguard(t), args...)
}

// StartDaemon starts `pullguard daemon --policy policyPath --log-target journald args...` and
// waits until its journal says it started: the policy is loaded, each runtime's first
// reconcile is done, and the entries about that are in the journal.
func StartDaemon(t testing.TB, policyPath string, args ...string) *Pullguard {
	t.Helper()
	p := StartPullguard(t, daemonArgs(policyPath, args...)...)
	p.WaitEntries(t, readyDeadline, 1, "MESSAGE_ID="+msgStarted)
	return p
}

// daemonArgs is the command line of `pullguard daemon` with the policy at policyPath, logging
// to journald (where the tests read what it did), and args.
func daemonArgs(policyPath string, args ...string) []string {
	return append([]string{"daemon", "--policy", policyPath, "--log-target", "journald"}, args...)
}

// startProcess starts name with args as StartPullguard starts pullguard: name is pullguard
// itself, or a program that execs it in the same process (systemd-socket-activate).
func startProcess(t testing.TB, name string, args ...string) *Pullguard {
	t.Helper()
	p := &Pullguard{
		cmd:   exec.Command(name, args...),
		out:   &syncBuffer{},
		done:  make(chan struct{}),
		since: time.Now(),
	}
	p.cmd.Env = os.Environ()
	if theEnv != nil {
		p.cmd.Env = theEnv.Environ()
	}
	// A state directory of its own (verdicts kept across restarts, policy
	// artifacts), unless the test passes --state-dir: no test sees what
	// another kept, and the host's /var/lib/pullguard is never made.
	p.cmd.Env = append(p.cmd.Env, "PULLGUARD_STATE_DIR="+filepath.Join(t.TempDir(), "state"))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = time.Second // a child holding the output pipe must not block Wait
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", filepath.Base(name), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		err := p.Stop(t)
		if t.Failed() || err != nil {
			t.Logf("%s %s (exit: %v), output:\n%s", filepath.Base(name), strings.Join(args, " "), err, p.Output())
		}
	})
	return p
}

// PID is the daemon's process ID; journald records it as _PID on each entry the daemon sends.
func (p *Pullguard) PID() int { return p.cmd.Process.Pid }

// Output is everything the daemon wrote to stdout and stderr so far.
func (p *Pullguard) Output() string { return p.out.String() }

// Stop sends SIGTERM and waits for the daemon to exit, killing it (and failing the test) if it
// takes longer than 10s. It returns the exit error, nil for a clean exit; calling it again
// returns the same.
func (p *Pullguard) Stop(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM to pullguard: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Errorf("pullguard did not exit within %v of SIGTERM; killing it", stopTimeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// Wait waits up to timeout for the daemon to exit on its own (a bad policy, say) and returns
// its exit error; the test fails if it is still running.
func (p *Pullguard) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("pullguard still running after %v; output:\n%s", timeout, p.Output())
		return nil
	}
}

// Running reports whether the daemon has not exited.
func (p *Pullguard) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the daemon.
func (p *Pullguard) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to pullguard: %v", sig, err)
	}
}

// Pause stops the daemon with SIGSTOP, so that it misses whatever happens until
// Signal(t, syscall.SIGCONT). It gets SIGCONT when the test ends in any case, before Stop's
// SIGTERM (cleanups run last-in first-out), which a stopped process would not act on.
func (p *Pullguard) Pause(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
}

// syncBuffer is a bytes.Buffer safe for the writing process and a reading test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
