package signature

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Reading the attestations cosign attest writes:
//   - classic (--new-bundle-format=false): the tag sha256-<hex>.att in the
//     image's repository, a manifest with one layer a statement, each a
//     DSSE envelope (application/vnd.dsse.envelope.v1+json); cosign appends
//     a layer for each new attestation;
//   - Sigstore bundles (cosign v3's default): artifacts attached through
//     the referrers API or the referrers tag, whose bundle holds a DSSE
//     envelope (one holding a message signature is a signature of a blob,
//     not an attestation).
//
// Each is handed to check as an envelope; a failure to read from the
// registry is returned (no answer), one that was read but is not an
// envelope is counted as malformed (an answer).

// maxAttestations bounds how many attestations of a digest are verified
// in each format. A scanner that re-scans daily appends a layer a day, and
// the newest must not be cut off: the last ones are kept.
const maxAttestations = 256

// dsseMediaType is the layer media type of a classic attestation.
const dsseMediaType = "application/vnd.dsse.envelope.v1+json"

type checkFunc func(env *ssldsse.Envelope, format string)

const (
	formatClassic = "cosign attestation"
	formatBundle  = "Sigstore bundle"
)

func classicAttestations(d name.Digest, h v1.Hash, opts []remote.Option, check checkFunc, f *found) error {
	img, err := remote.Image(d.Context().Tag(h.Algorithm+"-"+h.Hex+".att"), opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil // no classic attestation
	}
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if n := len(m.Layers); n > maxSignatureLayers {
		return fmt.Errorf("the attestation manifest has %d layers, more than %d", n, maxSignatureLayers)
	}
	layers := m.Layers
	if len(layers) > maxAttestations {
		layers = layers[len(layers)-maxAttestations:]
	}
	for _, desc := range layers {
		env, err := readEnvelope(img, desc)
		if err != nil {
			if isFetchError(err) {
				return err
			}
			f.malformed++
			continue
		}
		check(env, formatClassic)
	}
	return nil
}

// readEnvelope reads one classic attestation layer.
func readEnvelope(img v1.Image, desc v1.Descriptor) (*ssldsse.Envelope, error) {
	if string(desc.MediaType) != dsseMediaType {
		return nil, fmt.Errorf("attestation layer %s is %s, not a DSSE envelope", desc.Digest, desc.MediaType)
	}
	if desc.Size > maxAttestation {
		return nil, fmt.Errorf("attestation layer %s is %d bytes, more than %d", desc.Digest, desc.Size, maxAttestation)
	}
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed() // as the registry holds it: not compressed
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxAttestation))
	if err != nil {
		return nil, err
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, err
	}
	return &env, nil
}

func bundleAttestations(d name.Digest, opts []remote.Option, check checkFunc, f *found) error {
	idx, err := remote.Referrers(d, opts...)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var descs []v1.Descriptor
	for _, desc := range im.Manifests {
		if strings.HasPrefix(desc.ArtifactType, bundleMediaTypePrefix) {
			descs = append(descs, desc)
		}
	}
	if len(descs) > maxAttestations {
		descs = descs[len(descs)-maxAttestations:]
	}
	for _, desc := range descs {
		b, err := readBundle(d.Context().Digest(desc.Digest.String()), opts)
		if err != nil {
			if isFetchError(err) {
				return err
			}
			f.malformed++
			continue
		}
		denv := b.GetDsseEnvelope()
		if denv == nil {
			continue // a message signature: a signature, not an attestation
		}
		env := &ssldsse.Envelope{
			PayloadType: denv.GetPayloadType(),
			Payload:     base64.StdEncoding.EncodeToString(denv.GetPayload()),
		}
		// A bundle's envelope has exactly one signature, and cosign
		// verifies one with a key only when the bundle names a key, not
		// a certificate: anything else is left unsigned, by no listed key.
		if sigs := denv.GetSignatures(); len(sigs) == 1 && b.GetVerificationMaterial().GetPublicKey() != nil {
			env.Signatures = []ssldsse.Signature{{KeyID: sigs[0].GetKeyid(), Sig: base64.StdEncoding.EncodeToString(sigs[0].GetSig())}}
		}
		check(env, formatBundle)
	}
	return nil
}
