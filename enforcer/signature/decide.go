package signature

import (
	"context"
	"time"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// ReasonOffline is the evidence when verification is turned off
// (pullguard check --offline).
const ReasonOffline = "signature not verified (offline)"

// Decide judges input like policy.Decide and, when a signed-by rule names
// it, gathers the evidence the policy asks for and judges again with it.
// A tag is resolved at the registry to the digest a pull would fetch, and
// the reference is judged with that digest attached. With a nil verifier
// nothing is contacted: such rules then deny with ReasonOffline.
func Decide(ctx context.Context, v *Verifier, p *policy.Policy, input string, now time.Time) policy.Decision {
	d := p.Decide(input, now)
	if d.NeedsEvidence() == nil && d.NeedsAttestations() == nil {
		return d
	}
	ref, err := p.ParseRef(input)
	if err != nil {
		return d // cannot happen: a rule matched it
	}
	ev := &policy.Evidence{Digest: ref.Digest, Results: map[string]policy.SignatureResult{}}
	var none *policy.SignatureResult // the answer for every key set, when there is no digest to verify
	switch {
	case v == nil:
		none = &policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: ReasonOffline}
	case ref.Digest == "":
		digest, err := v.reg.Resolve(ctx, ref.String)
		if err != nil {
			res := policy.SignatureResult{Status: policy.SignatureUnverifiable,
				Reason: "cannot resolve " + ref.String + " at the registry (" + registry.Unreachable(err) + ")"}
			if registry.IsNotFound(err) {
				res = policy.SignatureResult{Status: policy.SignatureMissing, Reason: ref.String + " does not exist at the registry"}
			}
			none = &res
			break
		}
		withDigest, err := p.ParseRef(ref.String + "@" + digest)
		if err != nil {
			res := policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: "the registry answered with a bad digest: " + err.Error()}
			none = &res
			break
		}
		ref, ev.Digest = withDigest, digest
	}
	d = DecideRef(ctx, v, p, ref, now, ev, none)
	d.Input = input
	return d
}

// DecideRef judges a normalized reference with evidence, verifying each
// key set the policy asks about (ev.Digest, in ref's repository) unless
// none gives the answer for all of them: offline, or no digest to verify
// (an image loaded or built locally has no registry signature).
func DecideRef(ctx context.Context, v *Verifier, p *policy.Policy, ref policy.Ref, now time.Time, ev *policy.Evidence, none *policy.SignatureResult) policy.Decision {
	d := p.DecideEvidence(ref, now, ev)
	// Each round answers one key set or one rule's attestations; a rule
	// has at most one of each.
	for range 2 * len(p.Allow) {
		ks := d.NeedsEvidence()
		if ks == nil {
			if !ev.AnswerAttestations(d, func(q *policy.AttestationRequirement) policy.AttestationResult {
				return attestationsFor(ctx, v, ref, ev.Digest, q, none)
			}) {
				break
			}
			d = p.DecideEvidence(ref, now, ev)
			continue
		}
		switch {
		case none != nil:
			ev.Results[ks.ID] = *none
		case ev.Digest == "":
			ev.Results[ks.ID] = policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: "there is no manifest digest to verify"}
		default:
			ev.Results[ks.ID] = v.Verify(ctx, ref.Name, ev.Digest, ks)
		}
		d = p.DecideEvidence(ref, now, ev)
	}
	return d
}

// Source is the verifier as the policy core's signature source for one
// pass of a guard: it verifies ref's digest in ref's repository (cached)
// within ctx.
func (v *Verifier) Source(ctx context.Context) policy.SignatureSource {
	return source{ctx: ctx, v: v}
}

type source struct {
	ctx context.Context
	v   *Verifier
}

func (s source) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	return s.v.Verify(s.ctx, ref.Name, ref.Digest, keys)
}

// Decide is the package's Decide with v: what the authorization plugin
// asks about a pull.
func (v *Verifier) Decide(ctx context.Context, p *policy.Policy, input string, now time.Time) policy.Decision {
	return Decide(ctx, v, p, input, now)
}
