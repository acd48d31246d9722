package signature

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/pullguard/pullguard/policy"
)

// Keyless signatures are verified with sigstore-go's verifier against the
// key set's trusted root, read from the policy (never fetched): the
// certificate chains to a CA of the root at a time that a timestamp
// authority or transparency log of the root vouches for (at least one;
// every log entry present is checked), its SCTs are checked when the root
// lists CT logs, and its issuer and subject are one of the rule's signers.

// keyless is what verifying one key set's identities needs, built once.
type keyless struct {
	ids []verify.CertificateIdentity // parallel to the key set's Identities
	// plain asks for a signed timestamp or log entry; withLog also checks
	// the log entries an entity carries (when the root lists logs).
	plain, withLog *verify.Verifier
}

// keylessFor builds, or finds, the keyless verification of a key set; nil
// when it names no identity.
func (v *Verifier) keylessFor(ks *policy.KeySet) (*keyless, error) {
	if len(ks.Identities) == 0 {
		return nil, nil
	}
	if k, ok := v.idsets.Load(ks.ID); ok {
		return k.(*keyless), nil
	}
	if ks.Root == nil {
		return nil, errors.New("keyless signers without a trusted root")
	}
	tr, err := root.NewTrustedRootFromJSON(ks.Root.JSON)
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %v", ks.Root.Path, err)
	}
	k := &keyless{}
	for _, id := range ks.Identities {
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, "", id.Subject, id.SubjectRegexp)
		if err != nil {
			return nil, fmt.Errorf("signer %s: %v", id, err)
		}
		k.ids = append(k.ids, ci)
	}
	opts := []verify.VerifierOption{verify.WithObserverTimestamps(1)}
	if ks.Root.CTLogs > 0 {
		opts = append(opts, verify.WithSignedCertificateTimestamps(1))
	}
	if k.plain, err = verify.NewVerifier(tr, opts...); err != nil {
		return nil, err
	}
	k.withLog = k.plain
	if ks.Root.Logs > 0 {
		if k.withLog, err = verify.NewVerifier(tr, append(opts, verify.WithTransparencyLog(1))...); err != nil {
			return nil, err
		}
	}
	v.idsets.Store(ks.ID, k)
	return k, nil
}

// outcome is what one certificate-signed entity turned out to be.
type outcome struct {
	f finding
	// id and signer say who verified; signer is "<issuer> <subject>" as
	// the certificate has them, for a verified entity or another signer.
	id     *policy.Identity
	signer string
	why    string // why the certificate was not trusted
}

// check verifies entity with the key set's signers. artifact is what the
// signature covers (the classic payload), or nil for a DSSE envelope,
// whose statement is judged by judge once the signature holds.
func (k *keyless) check(ks *policy.KeySet, entity verify.SignedEntity, artifact []byte, judge func(*verify.VerificationResult) finding) outcome {
	vf := k.plain
	entries, _ := entity.TlogEntries()
	timestamps, _ := entity.Timestamps()
	if len(entries) > 0 {
		vf = k.withLog
	} else if len(timestamps) == 0 {
		// Nothing says when: the certificate lived ten minutes, some time.
		return outcome{f: untrusted, why: "no timestamp authority or transparency log of the trusted root says when it was signed"}
	}
	art := verify.WithoutArtifactUnsafe()
	if artifact != nil {
		art = verify.WithArtifact(strings.NewReader(string(artifact)))
	}
	opts := make([]verify.PolicyOption, len(k.ids))
	for i, ci := range k.ids {
		opts[i] = verify.WithCertificateIdentity(ci)
	}
	res, err := vf.Verify(entity, verify.NewPolicy(art, opts...))
	var mismatch *verify.ErrNoMatchingCertificateIdentity
	switch {
	case errors.As(err, &mismatch):
		return outcome{f: byOtherSigner, signer: signerOf(entity)}
	case err != nil && strings.HasPrefix(err.Error(), "failed to verify leaf certificate"):
		return outcome{f: untrusted, why: "its certificate does not chain to a CA of the trusted root at the time it was used"}
	case err != nil:
		return outcome{f: untrusted, why: err.Error()}
	case res.Signature == nil || res.Signature.Certificate == nil:
		return outcome{f: untrusted, why: "not signed with a certificate"}
	}
	s := res.Signature.Certificate
	signer := s.Extensions.Issuer + " " + s.SubjectAlternativeName
	if f := judge(res); f != verifiedSig {
		return outcome{f: f, signer: signer}
	}
	for i, ci := range k.ids {
		if ci.Verify(*s) == nil {
			return outcome{f: verifiedSig, id: ks.Identities[i], signer: signer}
		}
	}
	return outcome{f: byOtherSigner, signer: signer}
}

// signerOf names the certificate's issuer and subject, for a reason.
func signerOf(entity verify.SignedEntity) string {
	vc, err := entity.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return ""
	}
	s, err := certificate.SummarizeCertificate(vc.Certificate())
	if err != nil {
		return ""
	}
	return s.Extensions.Issuer + " " + s.SubjectAlternativeName
}

func verifiedIdentity(o outcome, format string) policy.SignatureResult {
	return policy.SignatureResult{Status: policy.SignatureVerified, Identity: o.id, Signer: o.signer,
		Reason: fmt.Sprintf("signed by %s (keyless, %s)", o.signer, format)}
}

// The annotations cosign puts on a classic keyless signature layer: the
// RFC 3161 timestamp over the signature, and the Rekor entry.
const (
	timestampAnnotation = "dev.sigstore.cosign/rfc3161timestamp"
	rekorAnnotation     = "dev.sigstore.cosign/bundle"
)

// classicEntity is a classic cosign signature as sigstore-go's verifier
// reads a bundle: the certificate, a message signature over the payload,
// and the timestamp and log entry from the layer's annotations.
type classicEntity struct {
	cert       *x509.Certificate
	sig        *bundle.MessageSignature
	timestamps [][]byte
	entries    []*tlog.Entry
}

func (e *classicEntity) HasInclusionPromise() bool { return len(e.entries) > 0 }
func (e *classicEntity) HasInclusionProof() bool   { return false }
func (e *classicEntity) VerificationContent() (verify.VerificationContent, error) {
	return bundle.NewCertificate(e.cert), nil
}
func (e *classicEntity) SignatureContent() (verify.SignatureContent, error) { return e.sig, nil }
func (e *classicEntity) Timestamps() ([][]byte, error)                      { return e.timestamps, nil }
func (e *classicEntity) TlogEntries() ([]*tlog.Entry, error)                { return e.entries, nil }

// Version: a classic signature is judged as the bundle version cosign
// writes, whose compatibility rules (the key type's default hash) apply.
func (e *classicEntity) Version() (string, error) { return "v0.3", nil }

// newClassicEntity reads a classic signature's keyless parts.
func newClassicEntity(sig *classicSignature) (*classicEntity, error) {
	raw, err := base64.StdEncoding.DecodeString(sig.b64sig)
	if err != nil {
		return nil, fmt.Errorf("signature is not base64: %v", err)
	}
	sum := sha256.Sum256(sig.payload)
	e := &classicEntity{cert: sig.cert, sig: bundle.NewMessageSignature(sum[:], "SHA2_256", raw)}
	if ts := sig.annotations[timestampAnnotation]; ts != "" {
		var t struct{ SignedRFC3161Timestamp []byte }
		if err := json.Unmarshal([]byte(ts), &t); err != nil {
			return nil, fmt.Errorf("%s: %v", timestampAnnotation, err)
		}
		e.timestamps = [][]byte{t.SignedRFC3161Timestamp}
	}
	if rb := sig.annotations[rekorAnnotation]; rb != "" {
		var b struct {
			SignedEntryTimestamp []byte
			Payload              struct {
				Body           string `json:"body"`
				IntegratedTime int64  `json:"integratedTime"`
				LogIndex       int64  `json:"logIndex"`
				LogID          string `json:"logID"`
			}
		}
		if err := json.Unmarshal([]byte(rb), &b); err != nil {
			return nil, fmt.Errorf("%s: %v", rekorAnnotation, err)
		}
		body, err1 := base64.StdEncoding.DecodeString(b.Payload.Body)
		logID, err2 := hex.DecodeString(b.Payload.LogID)
		var kv struct{ APIVersion, Kind string }
		err3 := json.Unmarshal(body, &kv)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("%s: %v", rekorAnnotation, err)
		}
		entry, err := tlog.NewTlogEntry(&protorekor.TransparencyLogEntry{
			LogIndex:          b.Payload.LogIndex,
			LogId:             &protocommon.LogId{KeyId: logID},
			KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
			IntegratedTime:    b.Payload.IntegratedTime,
			InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: b.SignedEntryTimestamp},
			CanonicalizedBody: body,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", rekorAnnotation, err)
		}
		e.entries = []*tlog.Entry{entry}
	}
	return e, nil
}

// checkClassicKeyless verifies a classic signature's certificate with the
// key set's signers, then that the payload names this digest.
func checkClassicKeyless(k *keyless, ks *policy.KeySet, sig *classicSignature, h v1.Hash) (outcome, string) {
	e, err := newClassicEntity(sig)
	if err != nil {
		return outcome{f: malformed, why: err.Error()}, ""
	}
	var claimed string
	o := k.check(ks, e, sig.payload, func(*verify.VerificationResult) finding {
		var ss payload.SimpleContainerImage
		if err := json.Unmarshal(sig.payload, &ss); err != nil || ss.Critical.Image.DockerManifestDigest != h.String() {
			claimed = ss.Critical.Image.DockerManifestDigest
			return forOtherDigest
		}
		return verifiedSig
	})
	return o, claimed
}

// checkBundleKeyless verifies a certificate-signed bundle with the key
// set's signers, then that its statement is cosign's signature of this
// digest (not an attestation, not another digest's).
func checkBundleKeyless(k *keyless, ks *policy.KeySet, pb *protobundle.Bundle, alg string, digest []byte) outcome {
	if pb.GetDsseEnvelope() == nil {
		// A message signature (cosign sign-blob) signs no image.
		return outcome{f: notASignature}
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return outcome{f: malformed, why: err.Error()}
	}
	return k.check(ks, b, nil, func(*verify.VerificationResult) finding {
		env := pb.GetDsseEnvelope()
		st, err := statement(env.GetPayloadType(), env.GetPayload())
		switch {
		case err != nil:
			return notASignature
		case !names(st, alg, digest):
			return forOtherDigest
		case st.GetPredicateType() != cosignSignPredicate:
			return notASignature
		}
		return verifiedSig
	})
}
