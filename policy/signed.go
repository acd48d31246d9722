package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"go.yaml.in/yaml/v3"
)

// Signature requirements (signed-by). An allow rule may list public keys;
// it then matches a reference only when the caller's evidence says that the
// reference's manifest digest carries a valid signature by one of them.
// The core never contacts a registry: a decision tells the caller which key
// set it needs evidence for (Decision.Signature), the caller verifies the
// digest (enforcer/signature) and asks again with the evidence.

// Key is one public key of a signed-by list, read and checked at load.
type Key struct {
	// Path is the key file as written in the policy, made absolute against
	// the policy file's directory.
	Path string
	// Fingerprint is "sha256:<hex>" of the key's DER SubjectPublicKeyInfo:
	// what `openssl pkey -pubin -outform DER | sha256sum` prints.
	Fingerprint string
	// DER is the key's SubjectPublicKeyInfo.
	DER []byte
	// Type names the algorithm for messages: "ECDSA P-256", "Ed25519", "RSA 3072".
	Type   string
	Source Position
}

// KeySet is a rule's signed-by list: keys and keyless identities, any
// one of which may have signed.
type KeySet struct {
	Keys []*Key
	// Identities are the keyless signers (identity.go), verified against
	// Root, the policy's trusted root.
	Identities []*Identity
	Root       *TrustedRoot
	// Repository is where the signatures are kept when not beside the
	// image (the rule's signature-repository, as cosign's COSIGN_REPOSITORY
	// puts them): host/path in normal form, "" for the image's own.
	Repository string
	// ID identifies the set by its keys' fingerprints, whatever their order
	// or file names, and the repository: results are cached per (digest, ID).
	ID string
}

// SignaturesOf is the repository the signatures of an image in repository
// are looked up in.
func (ks *KeySet) SignaturesOf(repository string) string {
	if ks.Repository != "" {
		return ks.Repository
	}
	return repository
}

// setID computes ID from the keys and the repository.
func (ks *KeySet) setID() {
	fps := make([]string, len(ks.Keys))
	for i, k := range ks.Keys {
		fps[i] = k.Fingerprint
	}
	fps = append(fps, identitiesID(ks.Identities, ks.Root)...)
	sort.Strings(fps)
	if ks.Repository != "" {
		fps = append(fps, "in "+ks.Repository)
	}
	sum := sha256.Sum256([]byte(strings.Join(fps, "\n")))
	ks.ID = hex.EncodeToString(sum[:])
}

// Describe names the keys and identities for reasons: key paths and
// "<issuer> <subject>", the way the policy says them.
func (ks *KeySet) Describe() string {
	names := make([]string, len(ks.Keys), len(ks.Keys)+len(ks.Identities))
	for i, k := range ks.Keys {
		names[i] = k.Path
	}
	return strings.Join(append(names, describeIdentities(ks.Identities)...), ", ")
}

// SignatureStatus is the outcome of verifying one digest against one key set.
type SignatureStatus string

const (
	// SignatureNotChecked: no evidence was given for the key set.
	SignatureNotChecked SignatureStatus = ""
	// SignatureVerified: a signature by one of the keys covers the digest.
	SignatureVerified SignatureStatus = "verified"
	// SignatureMissing: the registry holds no signature for the digest.
	SignatureMissing SignatureStatus = "missing"
	// SignatureInvalid: signatures exist, none by a listed key for this digest.
	SignatureInvalid SignatureStatus = "invalid"
	// SignatureUnverifiable: no definite answer (registry unreachable,
	// no digest to verify, verification turned off).
	SignatureUnverifiable SignatureStatus = "unverifiable"
)

// SignatureResult is the evidence for one key set.
type SignatureResult struct {
	Status SignatureStatus
	// Key is the key that verified, when Status is verified.
	Key *Key
	// Identity is the keyless signer that verified, when Status is
	// verified; Signer is the certificate's "<issuer> <subject>".
	Identity *Identity
	Signer   string
	// Reason says which key verified, or why none did.
	Reason string
}

// Field is the journal's PULLGUARD_SIGNATURE value: verified:<fingerprint>,
// identity:<issuer> <subject>, missing, invalid or unverifiable.
func (r SignatureResult) Field() string {
	if r.Status == SignatureVerified && r.Key != nil {
		return "verified:" + r.Key.Fingerprint
	}
	if r.Status == SignatureVerified && r.Signer != "" {
		return "identity:" + r.Signer
	}
	if r.Status == SignatureNotChecked {
		return string(SignatureUnverifiable)
	}
	return string(r.Status)
}

// Evidence is what a caller found out about one image's signatures.
type Evidence struct {
	// Digest is the manifest digest that was verified. It must be the
	// reference's digest when the reference carries one.
	Digest string
	// Results holds one result per KeySet.ID.
	Results map[string]SignatureResult
	// Attestations holds the attestation answers (attest.go).
	Attestations *Attested
}

// SignatureCheck on a decision names the signature-requiring rule that
// allowed the reference, or the first one that would have allowed it but
// for its signature, with the evidence it was judged on.
type SignatureCheck struct {
	Rule   *Rule
	Keys   *KeySet
	Result SignatureResult
}

// NeedsEvidence returns the key set a caller must verify before the
// decision is final, or nil.
func (d Decision) NeedsEvidence() *KeySet {
	if d.Signature != nil && d.Signature.Result.Status == SignatureNotChecked {
		return d.Signature.Keys
	}
	return nil
}

// RequiresSignatures reports whether any rule asks for signatures, so that
// callers set up registry access only when it can matter.
func (p *Policy) RequiresSignatures() bool {
	for _, r := range p.Allow {
		if r.SignedBy != nil {
			return true
		}
	}
	return false
}

// DecideEvidence judges a reference with signature evidence. Without
// evidence for a key set, a rule requiring it does not match.
func (p *Policy) DecideEvidence(ref Ref, now time.Time, ev *Evidence) Decision {
	return p.decide(ref, now, ev)
}

// signed tells the matcher whether a signature-requiring rule is satisfied,
// remembering the first rule lacking evidence and the first one that failed
// so the decision can say which and why.
func (m *matcher) signed(i int, r *Rule) bool {
	res := m.evidenceFor(r.SignedBy)
	if res.Status == SignatureVerified {
		return true
	}
	if res.Status == SignatureNotChecked {
		if m.needs < 0 || i < m.needs {
			m.needs = i
		}
	} else if m.unsigned < 0 || i < m.unsigned {
		m.unsigned, m.unsignedResult = i, res
	}
	return false
}

func (m *matcher) evidenceFor(ks *KeySet) SignatureResult {
	if m.evidence == nil {
		return SignatureResult{}
	}
	res, ok := m.evidence.Results[ks.ID]
	if !ok {
		return SignatureResult{}
	}
	if m.ref.Digest != "" && m.evidence.Digest != "" && m.evidence.Digest != m.ref.Digest {
		return SignatureResult{Status: SignatureUnverifiable,
			Reason: fmt.Sprintf("the signature evidence is for %s, not %s", m.evidence.Digest, m.ref.Digest)}
	}
	return res
}

// signatureDenial fills a denial caused by a signature requirement: a rule
// matched the name but its signature was missing, invalid or unchecked.
func (p *Policy) signatureDenial(d *Decision, allow *matcher) bool {
	// A rule still lacking evidence comes first: its evidence may allow.
	i, res := allow.needs, SignatureResult{}
	if i < 0 {
		i, res = allow.unsigned, allow.unsignedResult
	}
	if i < 0 {
		return false
	}
	r := p.Allow[i]
	d.Rule = r
	d.Signature = &SignatureCheck{Rule: r, Keys: r.SignedBy, Result: res}
	why := res.Reason
	if why == "" {
		why = "its signature was not verified"
	}
	d.Reason = fmt.Sprintf("%s, but %s", r.matchReason(), why)
	return true
}

// loading

func (l *loader) signedBy(v *yaml.Node, kind RuleKind) *KeySet {
	if kind != Allow {
		l.errorf(v, "signed-by: only allow rules can require signatures")
		return nil
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		got := describe(v)
		if v.Kind == yaml.SequenceNode {
			got = "an empty list"
		}
		l.errorf(v, "signed-by: expected a list of {key: PATH} or {issuer: URL, subject: WHO}, got %s", got)
		return nil
	}
	ks := &KeySet{}
	seen := map[string]bool{}
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			l.errorf(item, "signed-by: expected {key: PATH} or {issuer: URL, subject: WHO}, got %s", describe(item))
			continue
		}
		if isProfile(item) && !isIdentity(item) {
			for _, id := range l.profileEntry(item) {
				if !seen[id.String()] {
					seen[id.String()] = true
					ks.Identities = append(ks.Identities, id)
				}
			}
			continue
		}
		if isIdentity(item) {
			if id := l.identityEntry(item); id != nil && !seen[id.String()] {
				seen[id.String()] = true
				ks.Identities = append(ks.Identities, id)
			}
			continue
		}
		var key *Key
		hasKey := false
		l.mapping(item, signedByKeys, func(_ string, _, kv *yaml.Node) {
			hasKey = true
			if s, ok := l.str(kv, "key"); ok {
				key = l.loadKey(kv, s)
			}
		})
		if !hasKey {
			l.errorf(item, "signed-by: key: (a public key) or issuer: with subject: (a keyless signer) is required")
		}
		if key == nil {
			continue
		}
		if !seen[key.Fingerprint] {
			seen[key.Fingerprint] = true
			ks.Keys = append(ks.Keys, key)
		}
	}
	if len(ks.Keys) == 0 && len(ks.Identities) == 0 {
		return nil
	}
	if len(ks.Identities) > 0 {
		l.identitySets = append(l.identitySets, ks)
	}
	ks.setID()
	return ks
}

// isIdentity tells an identity entry from a key entry: it names an issuer
// or a subject. A subject without an issuer is refused as an identity.
func isIdentity(item *yaml.Node) bool {
	for i := 0; i+1 < len(item.Content); i += 2 {
		switch item.Content[i].Value {
		case "issuer", "subject", "subject-regexp":
			return true
		}
	}
	return false
}

// signatureRepository reads a rule's signature-repository: a repository
// name (no tag or digest), kept in the policy's normal form.
func (l *loader) signatureRepository(v *yaml.Node) string {
	s, ok := l.str(v, "signature-repository")
	if !ok {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		l.errorf(v, "signature-repository: %q is not a repository name: %v", s, err)
		return ""
	}
	if !reference.IsNameOnly(named) {
		l.errorf(v, "signature-repository: %q names a tag or digest; expected a repository like registry.example.com/signatures", s)
		return ""
	}
	r, err := ParseRef(named.Name())
	if err != nil {
		l.errorf(v, "signature-repository: %q is not a repository name: %v", s, err)
		return ""
	}
	return r.Name
}

// loadKey reads and checks one key file. Key files follow the policy's own
// rule: whoever can replace a key decides which images are "signed".
func (l *loader) loadKey(n *yaml.Node, p string) *Key {
	if p == "" {
		l.errorf(n, "signed-by: key: expected a path to a PEM public key, got an empty string")
		return nil
	}
	if !filepath.IsAbs(p) && l.fileName != "" {
		p = filepath.Join(filepath.Dir(l.fileName), p)
	}
	if k, ok := l.keys[p]; ok {
		return k
	}
	data, err := readTrustFile(p, l.perms, "key file")
	if err != nil {
		l.errorf(n, "signed-by: key %s: %v", p, err)
		return nil
	}
	k, err := parsePublicKey(data)
	if err != nil {
		l.errorf(n, "signed-by: key %s: %v", p, err)
		return nil
	}
	k.Path = p
	k.Source = Position{File: l.fileName, Line: n.Line, Column: n.Column}
	if l.keys == nil {
		l.keys = map[string]*Key{}
	}
	l.keys[p] = k
	l.keyData = append(l.keyData, Source{Name: p, Data: data})
	return k
}

// LoadKeySet reads key files outside a policy (the key a policy artifact
// must be signed with) under the rule policy key files follow, with the
// same formats: whoever can replace a key decides what is "signed".
// Relative paths are taken from the working directory.
func LoadKeySet(paths []string) (*KeySet, error) {
	ks := &KeySet{}
	perms := newPermissionChecker()
	var problems []string
	seen := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err == nil {
			var data []byte
			if data, err = readTrustFile(abs, perms, "key file"); err == nil {
				var k *Key
				if k, err = parsePublicKey(data); err == nil {
					k.Path = abs
					if !seen[k.Fingerprint] {
						seen[k.Fingerprint] = true
						ks.Keys = append(ks.Keys, k)
					}
					continue
				}
			}
		}
		problems = append(problems, fmt.Sprintf("key %s: %v", abs, err))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	ks.setID()
	return ks, nil
}

// readTrustFile reads a key file or trusted root (what says which) under
// the permission rule of policy files.
func readTrustFile(name string, perms *permissionChecker, what string) ([]byte, error) {
	// O_NONBLOCK: a key path naming a FIFO must not hang the load; it is
	// refused below as not a regular file.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("file does not exist")
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if perms != nil {
		if p := perms.file(name, st, what); p != nil {
			if p.Pos.File == name {
				return nil, errors.New(p.Msg)
			}
			return nil, errors.New(p.String())
		}
	}
	return readAll(f)
}

// parsePublicKey accepts what cosign accepts for --key: a PEM "PUBLIC KEY"
// (PKIX) holding ECDSA P-256/P-384/P-521, Ed25519 or RSA of 2048 bits or more.
func parsePublicKey(data []byte) (*Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM file (expected -----BEGIN PUBLIC KEY-----, as cosign generate-key-pair writes to cosign.pub)")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("more than one PEM block; put one public key in each file")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %q, expected \"PUBLIC KEY\" (a private key does not belong in the policy)", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %v", err)
	}
	k := &Key{DER: block.Bytes}
	switch pk := pub.(type) {
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			k.Type = "ECDSA " + pk.Curve.Params().Name
		default:
			return nil, fmt.Errorf("unsupported ECDSA curve %s", pk.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		k.Type = "Ed25519"
	case *rsa.PublicKey:
		if pk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too weak (2048 or more)", pk.N.BitLen())
		}
		k.Type = fmt.Sprintf("RSA %d", pk.N.BitLen())
	default:
		return nil, fmt.Errorf("unsupported key type %T (ECDSA, Ed25519 or RSA)", pub)
	}
	sum := sha256.Sum256(block.Bytes)
	k.Fingerprint = "sha256:" + hex.EncodeToString(sum[:])
	return k, nil
}
