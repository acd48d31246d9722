package policy

import (
	"fmt"
	"strings"
	"time"
)

// Decision is the policy's verdict on one reference, with what is needed to
// explain it: which rule decided (nil when the default did) and why.
type Decision struct {
	// Input is the reference as given.
	Input string
	// Reference is the normalized reference; empty if Input did not parse.
	Reference string
	Allowed   bool
	// Rule is the rule that decided, or nil when the default decided or the
	// reference did not parse.
	Rule *Rule
	// Reason says why, in words an operator can act on.
	Reason string
	// Resembles names an allowed repository that a denied reference closely
	// resembles: the mark of a typosquat.
	Resembles string
	// Signature is set when a signature-requiring rule decided, or would
	// have allowed the reference but for its signature (signed.go).
	Signature *SignatureCheck
	// Attestation is set when an attestation-requiring rule decided, or
	// would have allowed the reference but for its attestations (attest.go).
	Attestation *AttestationCheck
	// PolicyHash is the content hash of the policy that decided, so that a
	// journal entry names it rather than the policy in force when written.
	PolicyHash string
}

// RuleSource is where the deciding rule was written (file:line), or empty.
func (d Decision) RuleSource() string {
	if d.Rule == nil {
		return ""
	}
	return d.Rule.Source.String()
}

// Err returns nil for an allowed reference and a *DeniedError otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Decision: d}
}

// DeniedError is a denial as an error, for callers that refuse something
// (the authorization plugin, image verifiers). It is distinct from errors
// that mean the policy could not decide.
type DeniedError struct {
	Decision Decision
}

func (e *DeniedError) Error() string {
	d := e.Decision
	ref := d.Reference
	if ref == "" {
		ref = d.Input
	}
	msg := fmt.Sprintf("%s is not allowed: %s", ref, d.Reason)
	if src := d.RuleSource(); src != "" {
		msg += " (" + src + ")"
	}
	if d.Resembles != "" {
		msg += "; it resembles the allowed " + d.Resembles
	}
	return msg
}

const reasonNoAllowRule = "no allow rule matches"

// Decide judges one image reference as of now. It never fails: a reference
// that cannot be parsed is denied with the parser's reason.
func (p *Policy) Decide(input string, now time.Time) Decision {
	ref, err := p.cache.parse(input)
	if err != nil {
		return Decision{Input: input, Reason: "invalid reference: " + err.Error(), PolicyHash: p.Hash}
	}
	d := p.DecideRef(ref, now)
	d.Input = input
	return d
}

// DecideRef judges an already normalized reference. A rule requiring
// signatures does not match without evidence: see DecideEvidence.
func (p *Policy) DecideRef(ref Ref, now time.Time) Decision {
	return p.decide(ref, now, nil)
}

func (p *Policy) decide(ref Ref, now time.Time, ev *Evidence) Decision {
	d := Decision{Input: ref.String, Reference: ref.String, PolicyHash: p.Hash}
	deny := matcher{rules: p.Deny, ref: ref, now: now, aliases: true}
	deny.run(p.denyIdx)
	if deny.best >= 0 {
		d.Rule = p.Deny[deny.best]
		d.Reason = d.Rule.matchReason()
		d.Resembles = p.resembling(&ref, now)
		return d
	}
	allow := matcher{rules: p.Allow, ref: ref, now: now, evidence: ev}
	allow.run(p.allowIdx)
	if allow.best >= 0 {
		d.Allowed = true
		d.Rule = p.Allow[allow.best]
		d.Reason = d.Rule.matchReason()
		if d.Rule.SignedBy != nil {
			res := allow.evidenceFor(d.Rule.SignedBy)
			d.Signature = &SignatureCheck{Rule: d.Rule, Keys: d.Rule.SignedBy, Result: res}
			d.Reason += ": " + res.Reason
		}
		if d.Rule.Attestations != nil {
			p.attestationAllowed(&d, &allow)
		}
		return d
	}
	if p.evidenceDenial(&d, &allow) {
		d.Resembles = p.resembling(&ref, now)
		return d
	}
	if p.Default == DefaultAllow {
		d.Allowed = true
		d.Reason = "no rule matches; the default is allow"
		return d
	}
	d.Reason = reasonNoAllowRule
	if allow.expired >= 0 {
		r := p.Allow[allow.expired]
		note := r.Source.String()
		if r.Reason != "" {
			note = r.Reason + ", " + note
		}
		d.Reason = fmt.Sprintf("%s: the exception for %s (%s) expired on %s", reasonNoAllowRule, r.Pattern, note, formatExpiry(*r.Expires))
	}
	d.Resembles = p.resembling(&ref, now)
	return d
}

// Counts summarizes the policy for logs: rule counts by kind.
func (p *Policy) Counts() (allow, deny int) { return len(p.Allow), len(p.Deny) }

// Describe is a one-line summary of the policy for logs and status lines.
func (p *Policy) Describe() string {
	return fmt.Sprintf("mode=%s default=%s running=%s allow=%d deny=%d hash=%s files=%s",
		p.Mode, p.Default, p.Running, len(p.Allow), len(p.Deny), p.Hash, strings.Join(p.Files, ","))
}
