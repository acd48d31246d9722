// Package policy is pullguard's decision core: it loads and validates the
// allowlist policy, normalizes image references the way Docker does, and
// decides whether a reference is allowed. It is pure: no runtime clients, no
// clock (callers pass the time in), no logging, and no file access beyond
// loading the policy files.
package policy

import (
	"strconv"
	"sync/atomic"
	"time"
)

// Mode says whether pullguard acts on its decisions.
type Mode string

const (
	// ModeAudit logs what enforce would do and acts on nothing. It is the
	// default so that a new or half-written policy never removes an image.
	ModeAudit Mode = "audit"
	// ModeEnforce removes and blocks what the policy does not allow.
	ModeEnforce Mode = "enforce"
)

// Default is the decision for a reference that no rule matches.
type Default string

const (
	DefaultDeny  Default = "deny"
	DefaultAllow Default = "allow"
)

// Running says what happens to containers that are already running when
// their image becomes disallowed (at start-up or after a reload).
type Running string

const (
	// RunningKeep reports such containers and leaves them running.
	RunningKeep Running = "keep"
	// RunningStop stops and removes them.
	RunningStop Running = "stop"
)

// RuleKind is the list a rule came from.
type RuleKind string

const (
	Allow RuleKind = "allow"
	Deny  RuleKind = "deny"
)

// Position is where something was written in a policy file.
type Position struct {
	File   string
	Line   int
	Column int
}

// String renders the position as file:line, the form shown in decisions.
func (p Position) String() string {
	if p.File == "" {
		return ""
	}
	return p.File + ":" + strconv.Itoa(p.Line) // once a decision: no fmt
}

// Rule is one entry of the allow or deny list.
type Rule struct {
	Kind RuleKind
	// Image is the pattern as written; Pattern is its normalized form
	// (host/path with * and ** left in place), e.g. docker.io/library/*.
	Image   string
	Pattern string
	// Tags are tag globs (path.Match syntax); Digests are exact
	// "sha256:<hex>" manifest digests. Both empty: any tag or digest.
	Tags    []string
	Digests []string
	// Expires, when set, is the instant from which the rule matches nothing.
	// A date (2027-01-31) means 00:00 UTC on that date.
	Expires *time.Time
	// Reason is the operator's note (a ticket, a justification), shown in
	// every decision the rule makes.
	Reason string
	// SignedBy, on an allow rule, requires a signature by one of these keys
	// on the image's manifest digest (signed.go).
	SignedBy *KeySet
	// Attestations, on an allow rule, requires verified in-toto
	// statements of these types whose conditions hold (attest.go).
	Attestations []*AttestationRequirement
	Source       Position

	// reason is the reason of the decisions the rule makes, built the
	// first time it decides something and kept, so that later decisions
	// allocate nothing to explain themselves, while the rules of a
	// 100,000-rule allowlist that never decide anything cost nothing.
	reason atomic.Pointer[string]
}

// matchReason is why the rule decided: "matches allow rule ...".
func (r *Rule) matchReason() string {
	if s := r.reason.Load(); s != nil {
		return *s
	}
	s := "matches " + summarize(r)
	r.reason.Store(&s) // racing decisions store equal strings
	return s
}

// Policy is a loaded, validated and indexed policy. It is immutable and
// safe for concurrent use; a reload builds a new one.
type Policy struct {
	Mode    Mode
	Default Default
	Running Running
	Allow   []*Rule
	Deny    []*Rule
	// Files are the files the policy was read from, in reading order.
	Files []string
	// Hash is a content hash over every file read, to tell in logs which
	// version of the policy made a decision.
	Hash string
	// DefaultSource is where default: was set, or empty when implied.
	DefaultSource Position
	// LocalImages says whether content made on the host may carry an
	// allowed name (localimages.go).
	LocalImages LocalImages
	// TrustedRoot is what keyless signatures are verified against, when a
	// rule names identities; TrustedRootMaxAge is how old the shipped one
	// may be before a warning (trustedroot.go).
	TrustedRoot       *TrustedRoot
	TrustedRootMaxAge time.Duration

	allowIdx *index
	denyIdx  *index
	// pinsDigests is set when an allow rule names digests: then content can
	// make a name allowed that is denied by name alone.
	pinsDigests bool
	cache       *refCache
	names       *resemblanceIndex
}
