package daemon

import (
	"context"
	"time"
)

// FeedChecks is implemented by a PolicyFeed (package policysource) that
// can be checked on request, and that says when a check ended: a reload
// request (SIGHUP) then checks the source at once, and the status line is
// written again after every check, so that it says whether the source
// could be checked rather than what it said at the last policy change.
type FeedChecks interface {
	// CheckNow checks the source and returns once the check ended (a new
	// policy in force, or refused), or ctx is done.
	CheckNow(ctx context.Context)
	// Checked receives a value after each check.
	Checked() <-chan struct{}
}

// feedCheckTimeout bounds how long a reload request waits for the source:
// its artifact's download is bounded by a minute of its own.
const feedCheckTimeout = 90 * time.Second
