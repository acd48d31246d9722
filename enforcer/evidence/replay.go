package evidence

import (
	"errors"
	"slices"

	"github.com/pullguard/pullguard/policy"
)

// verified is what a verdict kept across a restart rests on: every answer
// the core was given while judging, each a verified yes (a verdict that
// rests on anything else is not kept at all).
type verified struct {
	// Served are the repositories the registry said serve the content.
	Served []string `json:"served,omitempty"`
	// Signatures are the signatures that verified.
	Signatures []verifiedSignature `json:"signatures,omitempty"`
}

// verifiedSignature is one verified signature: the image's repository
// and digest, the key set asked for (policy.KeySet.ID) and the key of
// that set that verified (its fingerprint).
type verifiedSignature struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	KeySet     string `json:"keySet"`
	Key        string `json:"key"`
	Reason     string `json:"reason,omitempty"`
}

// recorder is a pass's answers for one Judge that writes down each
// verified answer, so that the verdict can be kept across a restart.
type recorder struct {
	answers
	got verified
	// unwritable: an answer was verified that cannot be written down (a
	// signature without a key); the verdict is then kept in memory only.
	unwritable bool
}

func (r *recorder) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	res := r.answers.Signature(ref, keys)
	if res.Status == policy.SignatureVerified {
		if res.Key == nil {
			r.unwritable = true
		} else {
			r.got.Signatures = append(r.got.Signatures, verifiedSignature{
				Repository: ref.Name, Digest: ref.Digest, KeySet: keys.ID, Key: res.Key.Fingerprint, Reason: res.Reason})
		}
	}
	return res
}

// Attestations: the statements a verdict rested on are not written down
// (a verdict on attestations is kept a minute at most, in memory only).
func (r *recorder) Attestations(ref policy.Ref, want *policy.AttestationRequirement) policy.AttestationResult {
	res := r.answers.Attestations(ref, want)
	if res.Status == policy.AttestationVerified {
		r.unwritable = true
	}
	return res
}

func (r *recorder) Serves(repository, digest string) (bool, error) {
	served, err := r.answers.Serves(repository, digest)
	if err == nil && served && !slices.Contains(r.got.Served, repository) {
		r.got.Served = append(r.got.Served, repository)
	}
	return served, err
}

// evidence is what was written down, or nil when not all of it could be.
func (r *recorder) evidence() *verified {
	if r.unwritable {
		return nil
	}
	return &verified{Served: slices.Clip(r.got.Served), Signatures: slices.Clip(r.got.Signatures)}
}

// replayed answers the core from a kept verdict's evidence alone: what
// it does not hold is not asked anywhere, and marks the replay missed.
type replayed struct {
	ev     *verified
	missed bool
}

var errNotKept = errors.New("not among the kept verdict's evidence")

var _ policy.KnownOrigins = (*replayed)(nil)

func (r *replayed) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	for _, s := range r.ev.Signatures {
		if s.Repository != ref.Name || s.Digest != ref.Digest || s.KeySet != keys.ID {
			continue
		}
		for _, k := range keys.Keys {
			if k.Fingerprint == s.Key {
				return policy.SignatureResult{Status: policy.SignatureVerified, Key: k, Reason: s.Reason}
			}
		}
	}
	r.missed = true
	return policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: errNotKept.Error()}
}

// Attestations are never among a kept verdict's evidence.
func (r *replayed) Attestations(policy.Ref, *policy.AttestationRequirement) policy.AttestationResult {
	r.missed = true
	return policy.AttestationResult{Status: policy.AttestationUnverifiable, Reason: errNotKept.Error()}
}

func (r *replayed) Serves(repository, _ string) (bool, error) {
	if slices.Contains(r.ev.Served, repository) {
		return true, nil
	}
	r.missed = true
	return false, errNotKept
}

// Origins are the repositories that served the content: the core asks
// them first, as it did when the verdict was reached.
func (r *replayed) Origins(string) []string { return slices.Clone(r.ev.Served) }
