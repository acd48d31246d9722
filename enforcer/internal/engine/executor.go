package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Errors a Step's Do returns to say that nothing is to be reported.
var (
	// ErrGone: the object vanished before the step was done (its owner or
	// another worker was faster).
	ErrGone = errors.New("already gone")
	// ErrNotNow: the step cannot be done now for a reason that another
	// event or the next reconcile takes care of (a name moved to other
	// content, an image in use).
	ErrNotNow = errors.New("not now")
)

// Step is one planned action on one object: what the planner decided,
// and how to carry it out.
type Step struct {
	// Policy is the policy the step was planned under.
	Policy *policy.Policy
	// Record is the entry to report; its Action is what enforce mode does
	// (Removed, Untagged, Stopped, Blocked, Reported, Failed).
	Record enforcer.Record
	// Do carries the step out in enforce mode and returns the action taken
	// (empty: Record.Action). nil: nothing to do but report (Reported, or
	// a Failed the planner found).
	Do func(ctx context.Context) (enforcer.Action, error)
	// AllowedBy tells whether another policy allows the object. Set for
	// steps that destroy, so that they can be held while a reloaded policy
	// settles.
	AllowedBy func(*policy.Policy) bool
	// Complete, when set, adds to the record what only carrying the step
	// out told (the image ID in the runtime's event about a removal),
	// once Do has acted and before the record is reported.
	Complete func(*enforcer.Record)
}

// Outcome is what became of a step.
type Outcome int

const (
	// Reported: the step was done (or audited) and reported.
	Reported Outcome = iota
	// Stale: the policy was reloaded since the plan; the reload's
	// reconcile plans again.
	Stale
	// Skipped: nothing to report (ErrGone, ErrNotNow).
	Skipped
	// Held: the step waits for the policy to settle.
	Held
	// Failed: the step was tried and failed; reported as failed.
	Failed
)

// Executor carries out steps. It owns what every runtime does alike: audit
// mode's mapping (removed becomes would-remove...), the check that the
// policy planned under is still in force just before acting, holding
// destruction while a reloaded policy settles, mapping errors to failed
// records, and reporting.
type Executor struct {
	Runtime  string
	Policies enforcer.PolicySource
	Reporter enforcer.Reporter
	Now      func() time.Time
	// Hold is told until when a step was held, so that the guard judges
	// again then.
	Hold func(until time.Time)
	// DryRun reports every step with the action enforce mode would take,
	// and does nothing: what scan shows, planned exactly as a reconcile.
	DryRun bool

	holdMu sync.Mutex
	// heldUntil is the end of the last hold reported: one entry says a
	// hold began, not one per object held (a reload can hold thousands).
	heldUntil time.Time
}

func destructive(a enforcer.Action) bool {
	return a == enforcer.Removed || a == enforcer.Untagged || a == enforcer.Stopped
}

// Execute carries out s and reports it.
func (x *Executor) Execute(ctx context.Context, s Step) Outcome {
	rec := s.Record
	rec.Runtime = x.Runtime
	rec.Mode = s.Policy.Mode
	if rec.Time.IsZero() {
		rec.Time = x.Now()
	}
	if x.DryRun {
		x.Reporter.Report(rec)
		return Reported
	}
	if s.Policy.Mode != policy.ModeEnforce {
		rec.Action = enforcer.Audited(rec.Action)
		x.Reporter.Report(rec)
		return Reported
	}
	if s.Do == nil {
		x.Reporter.Report(rec)
		return Reported
	}
	if x.Policies.Current() != s.Policy {
		// A reload landed: acting under the old policy could remove what
		// the operator just allowed.
		return Stale
	}
	if destructive(rec.Action) && s.AllowedBy != nil {
		if h, ok := x.Policies.(enforcer.PolicyHistory); ok {
			if prev, until := h.Settling(); prev != nil && time.Now().Before(until) && s.AllowedBy(prev) {
				x.held(rec, until)
				return Held
			}
		}
	}
	action, err := s.Do(ctx)
	switch {
	case errors.Is(err, ErrGone), errors.Is(err, ErrNotNow):
		return Skipped
	case err != nil:
		rec.Action, rec.Err = enforcer.Failed, err
		x.Reporter.Report(rec)
		return Failed
	}
	if action != "" {
		rec.Action = action
	}
	if s.Complete != nil {
		s.Complete(&rec)
	}
	x.Reporter.Report(rec)
	return Reported
}

// held reports that destructive steps wait for the policy to settle, once
// per hold, and has the guard judge again when it ends.
func (x *Executor) held(rec enforcer.Record, until time.Time) {
	x.holdMu.Lock()
	first := until.After(x.heldUntil)
	if first {
		x.heldUntil = until
	}
	x.holdMu.Unlock()
	if first {
		x.Reporter.Report(enforcer.Record{
			Action: enforcer.Held, Runtime: rec.Runtime, Event: rec.Event, Mode: rec.Mode, Time: rec.Time,
			Decision: policy.Decision{PolicyHash: rec.Decision.PolicyHash, Reason: "the policy was just reloaded: " +
				"removals and stops of what the previous policy allowed wait until the policy files have been unchanged " +
				"for the settle period (until " + until.UTC().Format(time.RFC3339) + "), then are decided again"},
		})
	}
	if x.Hold != nil {
		x.Hold(until)
	}
}
