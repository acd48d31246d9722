package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	trustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultTrustedRoot is where the package installs Sigstore's public-good
// trusted root, used when identities are asked for and the policy names no
// trusted-root.
const DefaultTrustedRoot = "/usr/share/pullguard/trusted_root.json"

// defaultTrustedRoot is DefaultTrustedRoot; tests point it elsewhere.
var defaultTrustedRoot = DefaultTrustedRoot

// shippedRoots dates the public-good roots a release shipped, by their
// SHA-256: a root file carries no date of its own. packaging/nfpm.yaml
// says where each came from.
var shippedRoots = map[string]string{
	"4364d7724c04cc912ce2a6c45ed2610e8d8d1c4dc857fb500292738d4d9c8d2c": "2026-05-29",
}

// DefaultTrustedRootMaxAge is how old the shipped root may be before
// policy validate and the daemon warn that it may lack newer logs, CAs and
// timestamp authorities (trusted-root-max-age: changes it).
const DefaultTrustedRootMaxAge = 180 * 24 * time.Hour

// TrustedRoot is a Sigstore trusted_root.json: the certificate
// authorities keyless certificates chain to, and the transparency logs,
// CT logs and timestamp authorities whose evidence is honoured. The core
// only reads and checks it; enforcer/signature verifies with it.
type TrustedRoot struct {
	Path string
	// JSON is the file as read, what the verifier loads.
	JSON []byte
	// Digest is the SHA-256 of JSON, in hex.
	Digest string
	// Taken is when the shipped public-good root was taken; zero for any
	// other root.
	Taken time.Time
	// What the root lists.
	CAs, Logs, CTLogs, TSAs int
	// Source is where trusted-root: was set; empty for the shipped root.
	Source Position
}

// Summary says what the root is and lists, for policy validate.
func (r *TrustedRoot) Summary() string {
	s := fmt.Sprintf("%s (%d CA, %d transparency log, %d CT log, %d timestamp authority)", r.Path, r.CAs, r.Logs, r.CTLogs, r.TSAs)
	if !r.Taken.IsZero() {
		s += ", public-good root taken " + r.Taken.Format(time.DateOnly)
	}
	return s
}

// TrustedRootWarning says, when the policy verifies identities against the
// shipped root and that root is older than trusted-root-max-age at now,
// that it is old and how to replace it; "" otherwise.
func (p *Policy) TrustedRootWarning(now time.Time) string {
	r := p.TrustedRoot
	if r == nil || r.Taken.IsZero() {
		return ""
	}
	maxAge := p.TrustedRootMaxAge
	if maxAge == 0 {
		maxAge = DefaultTrustedRootMaxAge
	}
	age := now.Sub(r.Taken)
	if age <= maxAge {
		return ""
	}
	days := func(d time.Duration) string {
		if n := int(d.Hours() / 24); n != 1 {
			return strconv.Itoa(n) + " days"
		}
		return "1 day"
	}
	return fmt.Sprintf("the trusted root %s was taken %s, %s ago (trusted-root-max-age %s): "+
		"keyless signatures by CAs, logs or timestamp authorities added since are refused; "+
		"update the package or set trusted-root: to a current trusted_root.json",
		r.Path, r.Taken.Format(time.DateOnly), days(age), days(maxAge))
}

// trustedRootKey reads the top-level trusted-root: a path, made absolute
// against the policy file's directory.
func (l *loader) trustedRootKey(k, v *yaml.Node) {
	s, ok := l.str(v, "trusted-root")
	if !ok || !l.once("trusted-root", k) {
		l.rootFailed = true
		return
	}
	if s == "" {
		l.errorf(v, "trusted-root: expected a path to a Sigstore trusted_root.json, got an empty string")
		l.rootFailed = true
		return
	}
	if !filepath.IsAbs(s) && l.fileName != "" {
		s = filepath.Join(filepath.Dir(l.fileName), s)
	}
	pos := Position{File: l.fileName, Line: v.Line, Column: v.Column}
	r, err := l.readTrustedRoot(s)
	if err != nil {
		l.errorf(v, "trusted-root %s: %v", s, err)
		l.rootFailed = true
		return
	}
	r.Source = pos
	l.root = r
}

// trustedRootMaxAge reads trusted-root-max-age: days ("90d") or a Go
// duration ("2160h").
func (l *loader) trustedRootMaxAge(k, v *yaml.Node) {
	s, ok := l.str(v, "trusted-root-max-age")
	if !ok || !l.once("trusted-root-max-age", k) {
		return
	}
	d, err := parseAge(s)
	if err != nil {
		l.errorf(v, "trusted-root-max-age: %v", err)
		return
	}
	l.policy.TrustedRootMaxAge = d
}

func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("expected a number of days like 180d or a duration like 2160h, got %q", s)
}

// readTrustedRoot reads and checks a trusted root under the rule key files
// follow: whoever can replace the root decides which certificates are
// trusted. Its content is part of the policy hash.
func (l *loader) readTrustedRoot(p string) (*TrustedRoot, error) {
	data, err := readTrustFile(p, l.perms, "trusted root")
	if err != nil {
		return nil, err
	}
	r, err := parseTrustedRoot(data)
	if err != nil {
		return nil, err
	}
	r.Path = p
	l.keyData = append(l.keyData, Source{Name: p, Data: data})
	return r, nil
}

// parseTrustedRoot reads a trusted_root.json as Sigstore's clients do
// (its protobuf's JSON form) and checks that it can vouch for a keyless
// signature: a certificate authority, and a log or timestamp authority to
// say when the certificate was used.
func parseTrustedRoot(data []byte) (*TrustedRoot, error) {
	var tr trustroot.TrustedRoot
	if err := protojson.Unmarshal(data, &tr); err != nil {
		return nil, fmt.Errorf("not a Sigstore trusted_root.json: %v", err)
	}
	if mt := tr.GetMediaType(); !strings.HasPrefix(mt, "application/vnd.dev.sigstore.trustedroot") {
		return nil, fmt.Errorf("mediaType %q is not a Sigstore trusted root", mt)
	}
	sum := sha256.Sum256(data)
	r := &TrustedRoot{JSON: data, Digest: hex.EncodeToString(sum[:]),
		Logs: len(tr.GetTlogs()), CTLogs: len(tr.GetCtlogs()), TSAs: len(tr.GetTimestampAuthorities())}
	for _, ca := range tr.GetCertificateAuthorities() {
		if len(ca.GetCertChain().GetCertificates()) == 0 {
			return nil, errors.New("a certificate authority has no certificate")
		}
		r.CAs++
	}
	if r.CAs == 0 {
		return nil, errors.New("lists no certificate authority: no keyless certificate can chain to it")
	}
	if r.Logs == 0 && r.TSAs == 0 {
		return nil, errors.New("lists neither a transparency log nor a timestamp authority: nothing could say when a certificate was used")
	}
	if d, ok := shippedRoots[r.Digest]; ok {
		r.Taken, _ = time.Parse(time.DateOnly, d)
	}
	return r, nil
}
