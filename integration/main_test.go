// Package integration holds pullguard's end-to-end tests. They drive real runtimes (a private
// containerd, dockerd and registry, and the host's journald) started by testenv.sh, never mocks.
//
// Run them as root (sudo make test). Without root or the runtime packages they are skipped with
// one line saying why, except when CI=true, where that is a failure. PULLGUARD_TESTENV=DIR
// reuses an environment started by `testenv.sh up DIR && testenv.sh seed DIR`, for quick
// iteration.
//
// Tests share one dockerd and containerd, so they must not call t.Parallel.
package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	// theEnv is the environment the tests run against; nil when they are skipped.
	theEnv *Env
	// skipReason says why theEnv is nil.
	skipReason string
)

const (
	envDirPrefix   = "pgenv-"
	ownerFile      = "owner" // pid of the test binary that started the environment
	testenvTimeout = 3 * time.Minute
)

func TestMain(m *testing.M) {
	code := runMain(m)
	removeBinDir()
	os.Exit(code)
}

func runMain(m *testing.M) int {
	if dir := os.Getenv("PULLGUARD_TESTENV"); dir != "" {
		e, err := loadEnv(dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration: PULLGUARD_TESTENV=%s: %v\n", dir, err)
			return 1
		}
		theEnv = e
		return m.Run()
	}

	if reason := missingPrerequisite(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "integration: CI=true, but the integration tests cannot run: %s\n", reason)
			return 1
		}
		skipReason = "integration: tests skipped: " + reason + "; run them with: sudo make test"
		fmt.Println(skipReason)
		return m.Run()
	}

	sweepStaleEnvs()
	dir, err := newEnvDir()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	stopWatching := downOnSignal(dir)
	defer stopWatching()

	code := func() int {
		for _, step := range []string{"up", "seed"} {
			if out, err := testenv(step, dir); err != nil {
				fmt.Fprintf(os.Stderr, "integration: testenv.sh %s: %v\n%s", step, err, out)
				return 1
			}
		}
		e, err := loadEnv(dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration: %v\n", err)
			return 1
		}
		theEnv = e
		return m.Run()
	}()

	if out, err := testenv("down", dir); err != nil {
		fmt.Fprintf(os.Stderr, "integration: testenv.sh down: %v\n%s", err, out)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "integration: logs of the test environment are kept in %s/logs\n", dir)
		return code
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	return 0
}

// missingPrerequisite says why the environment cannot be started here, or "" if it can.
func missingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	var missing []string
	for _, bin := range []string{"containerd", "ctr", "runc", "dockerd", "docker",
		"docker-registry", "journalctl", "systemd-cat", "logger"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	for _, file := range []string{"/lib/systemd/systemd-journald", "/bin/busybox"} {
		if _, err := os.Stat(file); err != nil {
			missing = append(missing, file)
		}
	}
	// The 2026 engines (containerd 2.4.2, Docker 29...) built by testenv.sh install.
	if out, err := testenv("tools-dir"); err != nil {
		missing = append(missing, fmt.Sprintf("the 2026 tools (%v: %s)", err, out))
	} else if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(out)), "..", "complete")); err != nil {
		missing = append(missing, "the 2026 tools in "+strings.TrimSpace(string(out)))
	}
	if len(missing) > 0 {
		return "missing " + strings.Join(missing, ", ") + " (install: sudo integration/testenv.sh install)"
	}
	return ""
}

// newEnvDir makes the environment's directory, short enough for the unix sockets inside it.
func newEnvDir() (string, error) {
	parent := os.TempDir()
	if len(parent) > 30 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, envDirPrefix)
	if err != nil {
		return "", err
	}
	owner := []byte(strconv.Itoa(os.Getpid()))
	return dir, os.WriteFile(filepath.Join(dir, ownerFile), owner, 0o600)
}

// sweepStaleEnvs stops environments left by test binaries that died without cleaning up (a
// panic or a -timeout ends the process before TestMain can run `down`).
func sweepStaleEnvs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), envDirPrefix+"*"))
	if os.TempDir() != "/tmp" {
		more, _ := filepath.Glob(filepath.Join("/tmp", envDirPrefix+"*"))
		dirs = append(dirs, more...)
	}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not made by this harness
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // owner still running, or unreadable
		}
		fmt.Fprintf(os.Stderr, "integration: stopping stale environment %s\n", dir)
		if _, err := testenv("down", dir); err == nil {
			_ = os.RemoveAll(dir)
		}
	}
}

// downOnSignal stops the environment when the tests are interrupted (Ctrl-C), since the
// daemons run in their own sessions and would otherwise outlive the test binary.
func downOnSignal(dir string) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "integration: %v: stopping the test environment in %s\n", sig, dir)
		if out, err := testenv("down", dir); err != nil {
			fmt.Fprintf(os.Stderr, "integration: testenv.sh down: %v\n%s", err, out)
		}
		os.Exit(1)
	}()
	return func() {
		signal.Stop(ch)
		close(ch)
	}
}

// testenv runs integration/testenv.sh (the test binary runs in the package directory).
func testenv(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testenvTimeout)
	defer cancel()
	script, err := filepath.Abs("testenv.sh")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, "bash", append([]string{script}, args...)...).CombinedOutput()
}
