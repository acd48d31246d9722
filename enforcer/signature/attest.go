package signature

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// Attestations: the in-toto statements cosign attest writes, in both of
// its formats (attestfetch.go), verified by key as
// `cosign verify-attestation --key --insecure-ignore-tlog` verifies them:
// the DSSE envelope's signature by a listed key over the statement, and a
// subject of the statement is the image's digest. Which statement of a
// type decides, and whether its condition holds, is the policy core's.

// How long verified attestations are kept. Scanners re-scan and append, so
// a list that verified is read again after attestationTTL: a newer failing
// scan pushed since is seen within that plus a resync. Nothing found, or
// nothing by a listed key, is asked again soon; an unreachable registry at
// the next retry.
const (
	attestationTTL         = 5 * time.Minute
	attestationNegativeTTL = 30 * time.Second
	attestationFailTTL     = 5 * time.Second
)

// maxAttestation bounds one envelope or bundle: a scan report of a large
// image is a few MiB, and its predicate is decoded whole for conditions.
const maxAttestation = 16 << 20

func newAttestationCache() *cache[found] {
	return newCacheOf(cacheSize, func(f found) time.Duration {
		switch {
		case f.fetchErr != nil:
			return attestationFailTTL
		case len(f.verified) > 0:
			return attestationTTL
		}
		return attestationNegativeTTL
	})
}

// found is what a digest's attestations turned out to be, for one key set.
type found struct {
	where string
	// verified are the statements naming the digest, by type; never
	// changed once the answer is kept (the core only reads them).
	verified map[string][]policy.Statement
	// others counts, by the predicate type the statement claims, those
	// that no listed key verified for this digest.
	others    map[string]*tally
	fetchErr  error
	malformed int
}

// Attestations tells which statements of want.Type name digest in
// repository, each verified by one of want.SignedBy's keys. Every
// attestation of the digest is read once (both formats) and verified for
// the key set, and the answer kept per (repository, digest, key set) for
// every type.
func (v *Verifier) Attestations(ctx context.Context, repository, digest string, want *policy.AttestationRequirement) policy.AttestationResult {
	repository = want.SignedBy.SignaturesOf(repository)
	f := v.attests.get(repository+"@"+digest+"#"+want.SignedBy.ID, func() found {
		return v.attestationsOf(ctx, repository, digest, want.SignedBy)
	})
	return f.result(want)
}

func (v *Verifier) attestationsOf(ctx context.Context, repository, digest string, keys *policy.KeySet) found {
	ctx, cancel := context.WithTimeout(ctx, 2*v.reg.Timeout())
	defer cancel()
	f := found{where: digest + " in " + repository}
	d, err := v.reg.Digest(repository, digest)
	if err != nil {
		f.fetchErr = err
		return f
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		f.fetchErr = err
		return f
	}
	want, err := hex.DecodeString(h.Hex)
	if err != nil {
		f.fetchErr = err
		return f
	}
	verifiers, err := v.verifiers(keys)
	if err != nil {
		f.fetchErr = err
		return f
	}
	check := func(env *ssldsse.Envelope, format string) {
		f.check(ctx, env, format, h.Algorithm, want, keys, verifiers)
	}
	opts := v.reg.Options(ctx)
	if err := classicAttestations(d, h, opts, check, &f); err != nil {
		f.fetchErr = err
		return f
	}
	if err := bundleAttestations(d, opts, check, &f); err != nil {
		f.fetchErr = err
	}
	return f
}

// check verifies one envelope and files it: verified, or among the others
// under the type it claims.
func (f *found) check(ctx context.Context, env *ssldsse.Envelope, format, alg string, digest []byte, keys *policy.KeySet, verifiers [][]sigsig.Verifier) {
	payload, err := env.DecodeB64Payload()
	if err != nil {
		f.malformed++
		return
	}
	st, err := statement(env.PayloadType, payload)
	if err != nil {
		f.malformed++
		return
	}
	other := func(why finding) {
		if f.others == nil {
			f.others = map[string]*tally{}
		}
		t := f.others[st.GetPredicateType()]
		if t == nil {
			t = &tally{}
			f.others[st.GetPredicateType()] = t
		}
		t.add(why)
	}
	k := verifyEnvelope(ctx, env, verifiers)
	switch {
	case k < 0:
		other(byOtherKey)
	case !names(st, alg, digest):
		other(forOtherDigest)
	default:
		subjects := make([]any, len(st.GetSubject()))
		for i, s := range st.GetSubject() {
			ds := map[string]any{}
			for a, h := range s.GetDigest() {
				ds[a] = h
			}
			subjects[i] = map[string]any{"name": s.GetName(), "digest": ds}
		}
		var predicate any = map[string]any{}
		if p := st.GetPredicate(); p != nil {
			predicate = p.AsMap()
		}
		if f.verified == nil {
			f.verified = map[string][]policy.Statement{}
		}
		typ := st.GetPredicateType()
		f.verified[typ] = append(f.verified[typ], policy.Statement{PredicateType: typ, Predicate: predicate,
			Subject: subjects, Key: keys.Keys[k], Format: format})
	}
}

// verifyEnvelope returns the index of the key one of whose verifiers
// verifies env's signature, or -1.
func verifyEnvelope(ctx context.Context, env *ssldsse.Envelope, verifiers [][]sigsig.Verifier) int {
	for i, vs := range verifiers {
		for _, sv := range vs {
			pub, err := sv.PublicKey()
			if err != nil {
				continue
			}
			ev, err := ssldsse.NewEnvelopeVerifier(&sigdsse.VerifierAdapter{SignatureVerifier: sv, Pub: pub})
			if err != nil {
				continue
			}
			if _, err := ev.Verify(ctx, env); err == nil {
				return i
			}
		}
	}
	return -1
}

// result is the answer for one requirement.
func (f found) result(want *policy.AttestationRequirement) policy.AttestationResult {
	if f.fetchErr != nil {
		return policy.AttestationResult{Status: policy.AttestationUnverifiable,
			Reason: fmt.Sprintf("the attestations of %s could not be read from the registry (%s)", f.where, registry.Unreachable(f.fetchErr))}
	}
	if ss := f.verified[want.Type]; ss != nil {
		return policy.AttestationResult{Status: policy.AttestationVerified, Statements: ss}
	}
	unreadable := ""
	if f.malformed > 0 {
		unreadable = "; " + plural(f.malformed, "unreadable attestation", "unreadable attestations")
	}
	t := f.others[want.Type]
	if t == nil {
		return policy.AttestationResult{Status: policy.AttestationMissing,
			Reason: fmt.Sprintf("no attestation of type %s for %s (one signed by %s is required)%s", want.Type, f.where, want.SignedBy.Describe(), unreadable)}
	}
	var parts []string
	if n := t.counts[byOtherKey]; n > 0 {
		parts = append(parts, plural(n, "attestation", "attestations")+" by another key")
	}
	if n := t.counts[forOtherDigest]; n > 0 {
		parts = append(parts, plural(n, "attestation", "attestations")+" by a listed key for another digest")
	}
	sort.Strings(parts)
	return policy.AttestationResult{Status: policy.AttestationInvalid,
		Reason: fmt.Sprintf("no attestation of type %s signed by %s for %s: %s%s", want.Type, want.SignedBy.Describe(), f.where, strings.Join(parts, ", "), unreadable)}
}

// Attestations is the verifier as the policy core's attestation source
// for one pass (enforcer/evidence, the Docker guard): ref's digest in
// ref's repository, within the pass's context.
func (s source) Attestations(ref policy.Ref, want *policy.AttestationRequirement) policy.AttestationResult {
	return s.v.Attestations(s.ctx, ref.Name, ref.Digest, want)
}

var _ policy.AttestationSource = source{}

// ReasonAttestationsOffline is the answer when verification is turned off
// (pullguard check --offline).
const ReasonAttestationsOffline = "attestations not verified (offline)"

// attestationsFor answers one requirement for DecideRef: none, when set,
// is the answer signatures got for every key set (offline, no digest).
func attestationsFor(ctx context.Context, v *Verifier, ref policy.Ref, digest string, q *policy.AttestationRequirement, none *policy.SignatureResult) policy.AttestationResult {
	switch {
	case v == nil:
		return policy.AttestationResult{Status: policy.AttestationUnverifiable, Reason: ReasonAttestationsOffline}
	case none != nil && none.Status == policy.SignatureMissing:
		return policy.AttestationResult{Status: policy.AttestationMissing, Reason: none.Reason}
	case none != nil:
		return policy.AttestationResult{Status: policy.AttestationUnverifiable, Reason: none.Reason}
	case digest == "":
		return policy.AttestationResult{Status: policy.AttestationUnverifiable, Reason: "there is no manifest digest to verify"}
	}
	return v.Attestations(ctx, ref.Name, digest, q)
}
