// Package signature verifies cosign signatures on image manifests for the
// policy's signed-by rules, with Sigstore's own libraries and formats:
// go-containerregistry reads the registry, sigstore/sigstore's verifiers
// check the signatures, Sigstore's protobuf bundle type and in-toto's
// statement type read the bundles, DSSE envelopes are checked by
// go-securesystemslib. Nothing here does crypto by hand.
//
// Both formats cosign writes are read:
//   - classic: the tag sha256-<hex>.sig in the image's repository, a
//     manifest whose layers are simple-signing payloads with the signature
//     in an annotation (cosign sign --new-bundle-format=false);
//   - Sigstore bundles (cosign v3's default): artifacts attached through the
//     OCI 1.1 referrers API, or for registries without it (Debian's
//     docker-registry 2.8) through the referrers tag sha256-<hex>.
//
// Verification is offline: no TUF fetch, and the only network traffic is
// to the image's own registry. With a key it checks what cosign verify
// --key --insecure-ignore-tlog checks, with sigstore/sigstore's verifiers.
// Keyless signers (keyless.go) are checked by sigstore-go's verifier
// against the policy's trusted root: its timestamp authorities and
// transparency logs say when the certificate was used, its CAs whether it
// was trusted then.
package signature

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// maxSignatures bounds how many signatures of one digest are checked, so a
// registry (or whoever can push to it) cannot make verification unbounded.
const maxSignatures = 64

// maxPayload bounds what is read of one signature's payload or bundle:
// cosign's default limit for attachments (COSIGN_MAX_ATTACHMENT_SIZE).
const maxPayload = 128 << 20

// Verifier checks signatures at registries and caches the answers.
type Verifier struct {
	reg     *registry.Client
	cache   *cache[policy.SignatureResult]
	attests *cache[found] // attestations, verified (attest.go)
	keys    sync.Map      // fingerprint -> []sigsig.Verifier
	// idsets holds the keyless verification of each key set with
	// identities, by key set ID (which covers its trusted root).
	idsets sync.Map
}

// New returns a verifier using reg for registry access.
func New(reg *registry.Client) *Verifier {
	return &Verifier{reg: reg, cache: newCache(cacheSize), attests: newAttestationCache()}
}

// Registry is the client the verifier uses.
func (v *Verifier) Registry() *registry.Client { return v.reg }

// Verify tells whether digest, in repository (host/path, as the policy
// normalizes it), carries a valid signature by one of the keys. The
// signatures are looked up beside the image, or in the key set's
// signature repository: a signature binds the digest, wherever it is kept.
// Answers are cached per (repository, digest, key set); concurrent
// identical questions share one registry round.
func (v *Verifier) Verify(ctx context.Context, repository, digest string, keys *policy.KeySet) policy.SignatureResult {
	repository = keys.SignaturesOf(repository)
	return v.cache.get(repository+"@"+digest+"#"+keys.ID, func() policy.SignatureResult {
		return v.verify(ctx, repository, digest, keys)
	})
}

// finding is what one signature turned out to be.
type finding int

const (
	byOtherKey finding = iota
	forOtherDigest
	notASignature
	malformed
	// keyless: a certificate the root trusts for another signer, and one
	// it does not trust (outside the root, expired when used, no time).
	byOtherSigner
	untrusted
	// verifiedSig: by a listed key or signer, for this digest.
	verifiedSig
)

type tally struct {
	counts      map[finding]int
	otherDig    string
	fetchErr    error
	malformed   string
	otherSigner string
	untrusted   string
}

// keyless records what a certificate-signed signature was.
func (t *tally) keyless(o outcome, claimed string) {
	t.add(o.f)
	switch o.f {
	case byOtherSigner:
		t.otherSigner = o.signer
	case untrusted:
		t.untrusted = o.why
	case malformed:
		t.malformed = o.why
	case forOtherDigest:
		t.otherDig = claimed
	}
}

func (t *tally) add(f finding) {
	if t.counts == nil {
		t.counts = map[finding]int{}
	}
	t.counts[f]++
}

// unreadable records a signature that could not be read: no answer when
// the registry failed, a bad signature when what it sent is malformed.
func (t *tally) unreadable(err error) {
	if isFetchError(err) {
		t.fetchErr = err
		return
	}
	t.add(malformed)
	t.malformed = err.Error()
}

func (v *Verifier) verify(ctx context.Context, repository, digest string, keys *policy.KeySet) policy.SignatureResult {
	// Two registry rounds (classic and bundles), each bounded.
	ctx, cancel := context.WithTimeout(ctx, 2*v.reg.Timeout())
	defer cancel()
	d, err := v.reg.Digest(repository, digest)
	if err != nil {
		return policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: "cannot name the signatures: " + err.Error()}
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: "cannot verify digest " + digest + ": " + err.Error()}
	}
	verifiers, err := v.verifiers(keys)
	if err != nil {
		return policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: err.Error()}
	}
	kl, err := v.keylessFor(keys)
	if err != nil {
		return policy.SignatureResult{Status: policy.SignatureUnverifiable, Reason: err.Error()}
	}
	opts := v.reg.Options(ctx)

	s := signers{keys: keys, verifiers: verifiers, keyless: kl}
	var t tally
	if res, ok := v.classic(ctx, d, h, s, opts, &t); ok {
		return res
	}
	if res, ok := v.bundles(ctx, d, h, s, opts, &t); ok {
		return res
	}
	return t.result(d, keys)
}

// signers is what a signature is checked against: the key set, its keys'
// verifiers and its keyless verification (nil without identities).
type signers struct {
	keys      *policy.KeySet
	verifiers [][]sigsig.Verifier
	keyless   *keyless
}

func verified(k *policy.Key, format string) policy.SignatureResult {
	return policy.SignatureResult{Status: policy.SignatureVerified, Key: k,
		Reason: fmt.Sprintf("signed by %s (%s %s, %s)", k.Path, k.Type, shortFingerprint(k.Fingerprint), format)}
}

// result turns what was found into a definite answer, or "unverifiable"
// when a part of the registry could not be read: a signature that could
// not be fetched might have been the valid one.
func (t *tally) result(d name.Digest, keys *policy.KeySet) policy.SignatureResult {
	where := fmt.Sprintf("%s in %s", d.DigestStr(), d.Context().Name())
	if t.fetchErr != nil {
		return policy.SignatureResult{Status: policy.SignatureUnverifiable,
			Reason: fmt.Sprintf("signatures of %s could not be read from the registry (%s)", where, registry.Unreachable(t.fetchErr))}
	}
	total := 0
	for _, n := range t.counts {
		total += n
	}
	if total == 0 {
		return policy.SignatureResult{Status: policy.SignatureMissing, Reason: "no signature for " + where}
	}
	var parts []string
	if n := t.counts[byOtherKey]; n > 0 {
		parts = append(parts, plural(n, "signature", "signatures")+" by another key")
	}
	if n := t.counts[byOtherSigner]; n > 0 {
		parts = append(parts, plural(n, "signature", "signatures")+" by another signer ("+t.otherSigner+")")
	}
	if n := t.counts[untrusted]; n > 0 {
		parts = append(parts, plural(n, "keyless signature", "keyless signatures")+" not trusted ("+t.untrusted+")")
	}
	if n := t.counts[forOtherDigest]; n > 0 {
		s := plural(n, "signature", "signatures") + " by a listed key for another digest"
		if t.otherDig != "" {
			s += " (" + t.otherDig + ")"
		}
		parts = append(parts, s)
	}
	if n := t.counts[notASignature]; n > 0 {
		parts = append(parts, plural(n, "attestation", "attestations")+" by a listed key, not signatures")
	}
	if n := t.counts[malformed]; n > 0 {
		parts = append(parts, plural(n, "unreadable signature", "unreadable signatures")+" ("+t.malformed+")")
	}
	return policy.SignatureResult{Status: policy.SignatureInvalid,
		Reason: fmt.Sprintf("no valid signature by %s for %s: %s", listed(keys), where, strings.Join(parts, ", "))}
}

// listed names what a key set lists, for a refusal.
func listed(keys *policy.KeySet) string {
	switch {
	case len(keys.Identities) == 0:
		return "a listed key"
	case len(keys.Keys) == 0:
		return "a listed signer"
	}
	return "a listed key or signer"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func shortFingerprint(fp string) string {
	if len(fp) > len("sha256:")+16 {
		return fp[:len("sha256:")+16] + "…"
	}
	return fp
}

// verifiers loads each key for Sigstore's verifiers, once per key. A key
// gets cosign verify's default (SHA-256) and, where they differ, what
// cosign sign uses with it: the key type's default hash (SHA-384 for P-384)
// and Ed25519ph for Ed25519. cosign v3.1.3 signs with those but verifies
// with SHA-256 and pure Ed25519 unless told otherwise.
func (v *Verifier) verifiers(keys *policy.KeySet) ([][]sigsig.Verifier, error) {
	out := make([][]sigsig.Verifier, len(keys.Keys))
	for i, k := range keys.Keys {
		if vs, ok := v.keys.Load(k.Fingerprint); ok {
			out[i] = vs.([]sigsig.Verifier)
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.DER)
		if err != nil {
			return nil, fmt.Errorf("key %s: %v", k.Path, err)
		}
		sv, err := sigsig.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("key %s: %v", k.Path, err)
		}
		vs := []sigsig.Verifier{sv}
		if def, err := sigsig.LoadDefaultVerifier(pub); err == nil {
			if details, err := sigsig.GetDefaultAlgorithmDetails(pub); err == nil && details.GetHashType() != crypto.SHA256 {
				vs = append(vs, def)
			}
		}
		// cosign sign uses Ed25519ph for Ed25519 keys (its default load
		// options), where older versions used pure Ed25519.
		if _, ok := pub.(ed25519.PublicKey); ok {
			if ph, err := sigsig.LoadDefaultVerifier(pub, sigopts.WithED25519ph()); err == nil {
				vs = append(vs, ph)
			}
		}
		v.keys.Store(k.Fingerprint, vs)
		out[i] = vs
	}
	return out, nil
}

// isFetchError tells a failure to talk to the registry (no answer) from a
// signature that was read but is not what it should be (an answer).
func isFetchError(err error) bool {
	var terr *transport.Error
	var nerr net.Error
	return errors.As(err, &terr) || errors.As(err, &nerr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
