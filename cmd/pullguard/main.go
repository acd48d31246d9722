// Command pullguard keeps container hosts on approved images. main only
// parses, runs and turns the outcome into an exit status; the work is in
// the policy, enforcer and daemon packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses, the same for every subcommand.
const (
	exitOK     = 0
	exitDenied = 1 // something the policy denies was found
	exitUsage  = 2 // bad usage, or a policy that cannot be loaded
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "pullguard:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "pullguard:", err)
	return exitUsage
}

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error // printed if set
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
