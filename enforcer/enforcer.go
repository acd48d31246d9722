// Package enforcer decides what to do about a policy decision on a runtime
// and reports what it did. The runtime adapters (enforcer/docker,
// enforcer/containerd) and the authorization plugin (enforcer/authz) share
// the types here; each declares the few runtime calls it needs as a small
// interface of its own, so unit tests can use fakes while end-to-end tests
// drive real runtimes.
package enforcer

import (
	"context"
	"errors"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// Action is what pullguard did, or in audit mode would have done, about one
// decision. The values are what SREs filter on in PULLGUARD_ACTION.
type Action string

const (
	// Removed: an image record or container was deleted.
	Removed Action = "removed"
	// Untagged: one disallowed name was removed from an image that keeps
	// its content (it has other names, or is in use).
	Untagged Action = "untagged"
	// Stopped: a running container was stopped and removed.
	Stopped Action = "stopped"
	// Blocked: a request was refused before it took effect.
	Blocked Action = "blocked"
	// Reported: a disallowed running container was left running because
	// the policy says running: keep.
	Reported Action = "reported"
	// WouldRemove, WouldStop and WouldBlock are audit mode's versions.
	WouldRemove Action = "would-remove"
	WouldStop   Action = "would-stop"
	WouldBlock  Action = "would-block"
	// Failed: pullguard tried to act and could not.
	Failed Action = "failed"
	// Held: a removal or stop of something the previous policy allowed
	// waits until a reloaded policy has settled (its files unchanged for
	// the settle period), then is decided again: a policy written in two
	// steps must not destroy on its first half.
	Held Action = "held"
)

// Audited maps an enforcing action to what audit mode logs instead.
func Audited(a Action) Action {
	switch a {
	case Removed, Untagged:
		return WouldRemove
	case Stopped:
		return WouldStop
	case Blocked:
		return WouldBlock
	}
	return a
}

// Runtime names, as they appear in PULLGUARD_RUNTIME.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
)

// Journal MESSAGE_IDs of the guards' own connection entries, so that SREs
// can find outages (journalctl MESSAGE_ID=...). daemon/messageids.go lists
// every MESSAGE_ID pullguard writes, these included.
const (
	FieldMessageID = "MESSAGE_ID"
	FieldRuntime   = "PULLGUARD_RUNTIME"
	// FieldTrigger says why a guard reconciles when it logs that it does
	// so on its own ("behind": events may have been lost).
	FieldTrigger                 = "PULLGUARD_TRIGGER"
	MessageIDRuntimeConnected    = "c79fbfa9afc24b5f8b0d3ba6bd2301f3"
	MessageIDRuntimeDisconnected = "82e3253dbd0844049a88d072592d7394"
)

// Record is one decision that led to an action or a would-be action.
type Record struct {
	Action    Action
	Runtime   string
	Namespace string // containerd namespace; empty for Docker
	// Event is what triggered the decision: the runtime's event action
	// (pull, tag, create, ...), "reconcile", or "authz".
	Event string
	// Hook is the runtime hook that asked before the fact ("authz" for
	// Docker's authorization plugin, "nri" for containerd's NRI), empty
	// when the guard acted on an event or a reconcile.
	Hook string
	// Image is the image's name as the runtime lists it, normalized; when
	// empty, the decision's reference is shown. containerd judges a record
	// with its digest attached, but SREs filter on the name alone, as for
	// Docker.
	Image       string
	ImageID     string
	ContainerID string
	Mode        policy.Mode
	Decision    policy.Decision
	// Err is set when Action is Failed.
	Err error
	// Time is when the decision was made.
	Time time.Time

	// Plugin is the reference of the Docker plugin acted on, if any.
	Plugin string
}

// Reporter receives every Record; the daemon turns them into journal
// entries. Implementations must be safe for concurrent use and must not block.
type Reporter interface {
	Report(Record)
}

// PolicySource hands out the policy in force. A reload swaps it atomically,
// so every decision is made against one whole policy.
type PolicySource interface {
	Current() *policy.Policy
}

// PolicyHistory is implemented by a policy source that knows when its
// policy last changed (the daemon's policy watcher). The guards hold
// destructive steps on things the previous policy allowed until the
// policy has settled.
type PolicyHistory interface {
	// Settling returns the policy in force before the last reload and the
	// instant until which the policy is not settled; a zero time or a nil
	// policy means it is settled.
	Settling() (previous *policy.Policy, until time.Time)
}

// Observer is told what the guards do, for metrics and tests. Its methods
// must be safe for concurrent use and must not block.
type Observer interface {
	// Reconciled: a full pass over a runtime ended (err nil: it succeeded).
	Reconciled(runtime, trigger string, took time.Duration, err error)
	// Connected: the guard (re)connected to a runtime (up) or lost it.
	Connected(runtime string, up bool)
	// Behind: the guard noticed it may have missed events and reconciles.
	Behind(runtime, why string)
	// Event: an event was read from the runtime's stream.
	Event(runtime string)
}

// Signatures verifies the signatures signed-by rules ask for
// (enforcer/signature's Verifier). enforcer/evidence asks it for a source
// per pass and answers the policy core's signature questions with it.
type Signatures interface {
	Source(ctx context.Context) policy.SignatureSource
}

// SourceFor is s's signature source for one pass, or nil without s (signed-by
// rules then deny: fail closed).
func SourceFor(ctx context.Context, s Signatures) policy.SignatureSource {
	if s == nil {
		return nil
	}
	return s.Source(ctx)
}

// ErrSignatureUnverifiable is the failure a guard reports for an image or
// container whose denial rests on a signature that could not be verified
// (registry unreachable): nothing is removed on such an answer, and the
// next resync asks again.
var ErrSignatureUnverifiable = errors.New("signature could not be verified; nothing removed, asked again at the next resync")

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Record)

// Report calls f.
func (f ReporterFunc) Report(r Record) { f(r) }

// FindingKind says what a Finding is about.
type FindingKind string

const (
	FindingImage     FindingKind = "image"
	FindingContainer FindingKind = "container"
)

// Finding is one denied image name or container that a scan found: what
// the guard's reconcile would do about it in enforce mode, planned by the
// same planner, without acting.
type Finding struct {
	Runtime   string
	Namespace string // containerd namespace; empty for Docker
	Kind      FindingKind
	ImageID   string
	// Reference is the denied name (image findings) or the image as the
	// container was created from it (container findings).
	Reference      string
	ContainerID    string
	ContainerName  string
	ContainerState string
	Decision       policy.Decision
	// Action is what the guard does about it in enforce mode: Removed or
	// Untagged for an image name, Removed, Stopped or Reported for a
	// container; Reported for a name left because containers use the
	// image; Failed for a name it cannot remove without removing an
	// allowed one (Note says which).
	Action Action
	// Note explains a finding that is left in place.
	Note string
	// Provenance, for a Docker image, is the allowed repository digest
	// (repo@sha256:...) that shows its content came from an allowed
	// repository, or empty: built, loaded, imported or committed on the
	// host, or pulled from a repository the policy does not allow
	// (policy/provenance.go).
	Provenance string
}
