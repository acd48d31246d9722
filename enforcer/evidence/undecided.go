package evidence

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// Undecided is bounded. Anyone who can import content can name it after a
// registry that never answers (a host under an allowed host glob that
// does not exist, or that the attacker runs and stalls), and content whose
// provenance is undecided is kept. So an image whose provenance has been
// undecided for longer than a grace period is treated as not vouched for:
// denied, saying since when no registry answered. The grace is what a
// registry outage may last before allowed-looking content that no
// registry has vouched for goes; content a registry did vouch for while
// the process ran (provenance.Cache's origins) is not condemned by an
// outage, and neither is anything while pullguard has no network at all
// (that is a configuration, warned about once, not a registry's silence).

// DefaultGrace is how long an image's provenance may stay undecided
// before it is treated as not vouched for (pullguard daemon --undecided-grace).
const DefaultGrace = 10 * time.Minute

// WithGrace bounds how long an image's provenance may stay undecided
// (DefaultGrace; 0: not at all). Without it (scan, which keeps no history)
// undecided stays undecided.
func (j *Judge) WithGrace(grace time.Duration) *Judge {
	j.undecided.grace, j.undecided.bounded = grace, true
	return j
}

// undecidedSince remembers, per content digest, since when its provenance
// has been undecided. The core has no clock: the instant is the now each
// verdict was reached at.
type undecidedSince struct {
	mu      sync.Mutex
	grace   time.Duration
	bounded bool
	since   map[string]time.Time
}

// bound is v, or v treated as not vouched for when img's provenance has
// been undecided for longer than the grace.
func (j *Judge) bound(img policy.Image, v policy.Verdict, now time.Time) policy.Verdict {
	u := &j.undecided
	if !u.bounded || img.Digest == "" {
		return v
	}
	undecided := v.Outcome == policy.Undecided && !errors.Is(v.Err, policy.ErrSignatureUnanswered) &&
		!provenance.NoNetwork(v.Err) && (j.origins == nil || len(j.origins.Origins(img.Digest)) == 0)
	u.mu.Lock()
	defer u.mu.Unlock()
	if !undecided {
		delete(u.since, img.Digest)
		return v
	}
	first, ok := u.since[img.Digest]
	if !ok {
		if u.since == nil || len(u.since) >= maxVerdicts {
			u.since = map[string]time.Time{} // bounded; what is still undecided starts again
		}
		u.since[img.Digest], first = now, now
	}
	if now.Sub(first) < u.grace {
		return v
	}
	return v.NotVouchedFor(fmt.Sprintf("no registry answered where it came from since %s: %v",
		first.UTC().Format(time.RFC3339), v.Err))
}
