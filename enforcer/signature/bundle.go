package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	intoto "github.com/in-toto/attestation/go/v1"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pullguard/pullguard/policy"
)

// bundleMediaTypePrefix marks a Sigstore bundle among an image's referrers.
const bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// bundleV03 are the two spellings of the one bundle version cosign v3
// verifies (it refuses older ones; sigstore-go does not know newer ones).
var bundleV03 = map[string]bool{
	"application/vnd.dev.sigstore.bundle.v0.3+json":        true,
	"application/vnd.dev.sigstore.bundle+json;version=0.3": true,
}

const (
	// intotoPayloadType is the DSSE payload type of an in-toto statement.
	intotoPayloadType = "application/vnd.in-toto+json"
	// cosignSignPredicate is the predicate of cosign sign's statement;
	// any other (an SBOM, provenance) is an attestation, not a signature.
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	// sigstore-go's bounds on a statement's subjects.
	maxSubjects       = 1024
	maxSubjectDigests = 32
)

// bundles checks Sigstore bundles among the digest's referrers.
func (v *Verifier) bundles(ctx context.Context, d name.Digest, h v1.Hash, s signers, opts []remote.Option, t *tally) (policy.SignatureResult, bool) {
	// The referrers API, or the referrers tag where the registry lacks it.
	idx, err := remote.Referrers(d, opts...)
	if err != nil {
		t.fetchErr = err
		return policy.SignatureResult{}, false
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.fetchErr = err
		return policy.SignatureResult{}, false
	}
	digestBytes, err := hex.DecodeString(h.Hex)
	if err != nil {
		t.fetchErr = err
		return policy.SignatureResult{}, false
	}
	checked := 0
	for _, desc := range im.Manifests {
		if !strings.HasPrefix(desc.ArtifactType, bundleMediaTypePrefix) {
			continue // an SBOM or another tool's artifact
		}
		if checked++; checked > maxSignatures {
			break
		}
		b, err := readBundle(d.Context().Digest(desc.Digest.String()), opts)
		if err != nil {
			t.unreadable(err)
			continue
		}
		if s.keyless != nil && b.GetVerificationMaterial().GetPublicKey() == nil {
			o := checkBundleKeyless(s.keyless, s.keys, b, h.Algorithm, digestBytes)
			if o.f == verifiedSig {
				return verifiedIdentity(o, "Sigstore bundle"), true
			}
			t.keyless(o, "")
			continue
		}
		f, key := checkBundle(ctx, b, h.Algorithm, digestBytes, s.keys, s.verifiers)
		if key != nil {
			return verified(key, "Sigstore bundle"), true
		}
		t.add(f)
	}
	return policy.SignatureResult{}, false
}

// readBundle reads the bundle an artifact manifest carries (its one layer)
// and checks that it is a bundle cosign would verify.
func readBundle(ref name.Digest, opts []remote.Option) (*protobundle.Bundle, error) {
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		return nil, errors.New("expected exactly one layer")
	}
	mt, err := layers[0].MediaType()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(string(mt), bundleMediaTypePrefix) {
		return nil, errors.New("expected bundle layer")
	}
	if size, err := layers[0].Size(); err != nil {
		return nil, err
	} else if size > maxPayload {
		return nil, fmt.Errorf("bundle of %d bytes, more than %d", size, maxPayload)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxPayload))
	if err != nil {
		return nil, err
	}
	b := &protobundle.Bundle{}
	if err := protojson.Unmarshal(data, b); err != nil {
		return nil, err
	}
	return b, validBundle(b)
}

// validBundle is what sigstore-go and cosign require of a bundle's shape
// before they look at its signature.
func validBundle(b *protobundle.Bundle) error {
	if !bundleV03[b.GetMediaType()] {
		return fmt.Errorf("bundle media type %q is not a supported version (v0.3)", b.GetMediaType())
	}
	vm := b.GetVerificationMaterial()
	if vm == nil || vm.GetContent() == nil {
		return errors.New("invalid bundle: missing verification material")
	}
	if vm.GetX509CertificateChain() != nil {
		return errors.New("verification material cannot be X.509 certificate chain (for bundle v0.3)")
	}
	switch {
	case b.GetDsseEnvelope() != nil, b.GetMessageSignature() != nil:
		return nil
	default:
		return errors.New("invalid bundle: missing content")
	}
}

// checkBundle is cosign's check of a bundle with a key (what sigstore-go
// checks for it): the bundle names a key, not a certificate; its DSSE
// envelope holds one signature, made by the key over the in-toto
// statement; a subject of the statement is this digest; and the statement
// is cosign's signature, not another attestation. It returns the key that
// verified, or what the bundle is instead.
func checkBundle(ctx context.Context, b *protobundle.Bundle, alg string, digest []byte, keys *policy.KeySet, verifiers [][]sigsig.Verifier) (finding, *policy.Key) {
	if b.GetVerificationMaterial().GetPublicKey() == nil {
		// A certificate: keyless signing, which no listed key verifies.
		return byOtherKey, nil
	}
	if ms := b.GetMessageSignature(); ms != nil {
		return checkMessageSignature(ctx, ms, alg, digest, verifiers), nil
	}
	env := b.GetDsseEnvelope()
	if len(env.GetSignatures()) != 1 {
		return byOtherKey, nil // a bundle's envelope has exactly one signature
	}
	denv := &ssldsse.Envelope{
		PayloadType: env.GetPayloadType(),
		Payload:     base64.StdEncoding.EncodeToString(env.GetPayload()),
		Signatures: []ssldsse.Signature{{
			KeyID: env.GetSignatures()[0].GetKeyid(),
			Sig:   base64.StdEncoding.EncodeToString(env.GetSignatures()[0].GetSig()),
		}},
	}
	i := verifyEnvelope(ctx, denv, verifiers)
	if i < 0 {
		return byOtherKey, nil
	}
	// Signed by this key: for this digest, and a signature?
	st, err := statement(env.GetPayloadType(), env.GetPayload())
	switch {
	case err != nil:
		return notASignature, nil
	case !names(st, alg, digest):
		return forOtherDigest, nil
	case st.GetPredicateType() != cosignSignPredicate:
		// An attestation (SBOM, provenance) by the key says something
		// about the image; it is not a signature.
		return notASignature, nil
	}
	return byOtherKey, keys.Keys[i]
}

// statement reads the in-toto statement a DSSE envelope carries, within
// sigstore-go's bounds.
func statement(payloadType string, payload []byte) (*intoto.Statement, error) {
	if payloadType != intotoPayloadType {
		return nil, fmt.Errorf("unsupported DSSE payload type %q", payloadType)
	}
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(payload, &st); err != nil {
		return nil, err
	}
	if len(st.GetSubject()) > maxSubjects {
		return nil, fmt.Errorf("too many subjects: %d > %d", len(st.GetSubject()), maxSubjects)
	}
	for _, s := range st.GetSubject() {
		if len(s.GetDigest()) > maxSubjectDigests {
			return nil, fmt.Errorf("too many digests: %d > %d", len(s.GetDigest()), maxSubjectDigests)
		}
	}
	return &st, nil
}

// names tells whether a subject of st is the digest.
func names(st *intoto.Statement, alg string, digest []byte) bool {
	for _, s := range st.GetSubject() {
		if d, err := hex.DecodeString(s.GetDigest()[alg]); err == nil && bytes.Equal(d, digest) {
			return true
		}
	}
	return false
}

// checkMessageSignature: a bundle signing a digest directly (cosign
// sign-blob) rather than a statement. Made by a listed key over this
// digest it is still no image signature; sigstore-go cannot check one
// without the digest it names, so one for another digest is by no key.
func checkMessageSignature(ctx context.Context, ms *protocommon.MessageSignature, alg string, digest []byte, verifiers [][]sigsig.Verifier) finding {
	md := ms.GetMessageDigest()
	if alg != "sha256" || md.GetAlgorithm() != protocommon.HashAlgorithm_SHA2_256 || !bytes.Equal(md.GetDigest(), digest) {
		return byOtherKey
	}
	for _, vs := range verifiers {
		for _, sv := range vs {
			if err := sv.VerifySignature(bytes.NewReader(ms.GetSignature()), nil, sigopts.WithDigest(digest), sigopts.WithContext(ctx)); err == nil {
				return notASignature
			}
		}
	}
	return byOtherKey
}
