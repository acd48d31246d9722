package enforcertest

import (
	"context"
	"sync"

	"github.com/pullguard/pullguard/policy"
)

// Signatures is an enforcer.Signatures that answers by digest, as a
// registry would; a digest it was not told about has no signature.
type Signatures struct {
	mu       sync.Mutex
	byDigest map[string]policy.SignatureStatus
}

// NewSignatures answers with the given statuses.
func NewSignatures(byDigest map[string]policy.SignatureStatus) *Signatures {
	s := &Signatures{byDigest: map[string]policy.SignatureStatus{}}
	for d, st := range byDigest {
		s.byDigest[d] = st
	}
	return s
}

// Set changes the answer for a digest (a registry that comes back, a
// signature pushed).
func (s *Signatures) Set(digest string, st policy.SignatureStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byDigest[digest] = st
}

// Source implements enforcer.Signatures.
func (s *Signatures) Source(context.Context) policy.SignatureSource { return s }

// Signature implements policy.SignatureSource.
func (s *Signatures) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byDigest[ref.Digest]
	if !ok {
		st = policy.SignatureMissing
	}
	res := policy.SignatureResult{Status: st, Reason: "the registry says " + string(st)}
	if st == policy.SignatureVerified {
		res.Key = keys.Keys[0]
	}
	return res
}

// Attestations implements policy.AttestationSource: nothing is verified,
// so attestation rules deny (fail closed).
func (s *Signatures) Attestations(policy.Ref, *policy.AttestationRequirement) policy.AttestationResult {
	return policy.AttestationResult{}
}
