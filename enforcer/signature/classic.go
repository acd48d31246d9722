package signature

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/pullguard/pullguard/policy"
)

// The annotations cosign puts on a classic signature layer.
const (
	signatureAnnotation   = "dev.cosignproject.cosign/signature"
	certificateAnnotation = "dev.sigstore.cosign/certificate"
	chainAnnotation       = "dev.sigstore.cosign/chain"
)

// maxSignatureLayers is cosign's bound on a signature manifest's layers;
// a manifest with more is refused whole, as cosign does.
const maxSignatureLayers = 1000

// classicSignature is one layer of a .sig manifest, read.
type classicSignature struct {
	payload []byte // the simple-signing payload the key signed
	b64sig  string // the signature, base64, from the layer's annotation
	// The certificate and chain cosign may attach; with a key they only
	// bound when the signature is valid.
	cert  *x509.Certificate
	chain []*x509.Certificate
	// annotations carry a keyless signature's timestamp and log entry.
	annotations map[string]string
}

// classic checks the sha256-<hex>.sig tag's simple-signing payloads.
func (v *Verifier) classic(ctx context.Context, d name.Digest, h v1.Hash, s signers, opts []remote.Option, t *tally) (policy.SignatureResult, bool) {
	img, err := remote.Image(d.Context().Tag(h.Algorithm+"-"+h.Hex+".sig"), opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return policy.SignatureResult{}, false // no classic signature
	}
	if err != nil {
		t.fetchErr = err
		return policy.SignatureResult{}, false
	}
	m, err := img.Manifest()
	if err != nil {
		t.fetchErr = err
		return policy.SignatureResult{}, false
	}
	if n := len(m.Layers); n > maxSignatureLayers {
		t.fetchErr = fmt.Errorf("the signature manifest has %d layers, more than %d", n, maxSignatureLayers)
		return policy.SignatureResult{}, false
	}
	layers := m.Layers
	if len(layers) > maxSignatures {
		layers = layers[:maxSignatures]
	}
	for _, desc := range layers {
		// Read the payload now, so a network failure is not mistaken for
		// a bad signature below.
		sig, err := readClassic(img, desc)
		if err != nil {
			t.unreadable(err)
			continue
		}
		f, key, claimed := checkClassic(ctx, sig, h, s.keys, s.verifiers)
		if key != nil {
			return verified(key, "cosign signature"), true
		}
		if s.keyless != nil && sig.cert != nil {
			o, claimed := checkClassicKeyless(s.keyless, s.keys, sig, h)
			if o.f == verifiedSig {
				return verifiedIdentity(o, "cosign signature"), true
			}
			t.keyless(o, claimed)
			continue
		}
		t.add(f)
		if f == forOtherDigest {
			t.otherDig = claimed
		}
	}
	return policy.SignatureResult{}, false
}

// readClassic reads one signature layer: its payload from the registry
// (checked against the layer's digest by go-containerregistry) and what
// cosign put in its annotations.
func readClassic(img v1.Image, desc v1.Descriptor) (*classicSignature, error) {
	b64sig, ok := desc.Annotations[signatureAnnotation]
	if !ok {
		return nil, fmt.Errorf("signature layer %s is missing %q annotation", desc.Digest, signatureAnnotation)
	}
	sig := &classicSignature{b64sig: b64sig, annotations: desc.Annotations}
	var err error
	if sig.cert, sig.chain, err = annotatedCertificates(desc.Annotations); err != nil {
		return nil, err
	}
	if desc.Size > maxPayload {
		return nil, fmt.Errorf("signature layer %s is %d bytes, more than %d", desc.Digest, desc.Size, maxPayload)
	}
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	// Compressed: the payload as the registry holds it (it is not compressed).
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if sig.payload, err = io.ReadAll(io.LimitReader(rc, maxPayload)); err != nil {
		return nil, err
	}
	return sig, nil
}

func annotatedCertificates(ann map[string]string) (*x509.Certificate, []*x509.Certificate, error) {
	var cert *x509.Certificate
	var chain []*x509.Certificate
	if p := ann[certificateAnnotation]; p != "" {
		certs, err := cryptoutils.LoadCertificatesFromPEM(strings.NewReader(p))
		if err != nil {
			return nil, nil, err
		}
		if len(certs) > 0 {
			cert = certs[0]
		}
	}
	if p := ann[chainAnnotation]; p != "" {
		certs, err := cryptoutils.LoadCertificatesFromPEM(strings.NewReader(p))
		if err != nil {
			return nil, nil, err
		}
		chain = certs
	}
	return cert, chain, nil
}

// checkClassic is cosign's check of a classic signature with a key: the
// key signed the payload, a certificate attached to it (if any) is within
// its validity, and the payload names this digest. It returns the key
// that verified, or what the signature is instead; for a signature of
// another digest, the digest its payload claims.
func checkClassic(ctx context.Context, sig *classicSignature, h v1.Hash, keys *policy.KeySet, verifiers [][]sigsig.Verifier) (finding, *policy.Key, string) {
	raw, err := base64.StdEncoding.DecodeString(sig.b64sig)
	if err != nil {
		return byOtherKey, nil, ""
	}
	if sig.cert != nil && certificateExpired(sig.cert, sig.chain, time.Now()) {
		return byOtherKey, nil, ""
	}
	f, claimed := byOtherKey, ""
	for i, vs := range verifiers {
		for _, sv := range vs {
			if err := sv.VerifySignature(bytes.NewReader(raw), bytes.NewReader(sig.payload), sigopts.WithContext(ctx)); err != nil {
				continue
			}
			// The key signed this payload; now it must name this digest.
			var ss payload.SimpleContainerImage
			if err := json.Unmarshal(sig.payload, &ss); err != nil || ss.Critical.Image.DockerManifestDigest != h.String() {
				f, claimed = forOtherDigest, ss.Critical.Image.DockerManifestDigest
				continue
			}
			return f, keys.Keys[i], ""
		}
	}
	return f, nil, claimed
}

// certificateExpired is cosign's expiry check of a certificate attached to
// a key's signature when no timestamp vouches for the signing time.
func certificateExpired(cert *x509.Certificate, chain []*x509.Certificate, now time.Time) bool {
	for _, c := range append([]*x509.Certificate{cert}, chain...) {
		if c.NotAfter.Before(now) || c.NotBefore.After(now) {
			return true
		}
	}
	return false
}
