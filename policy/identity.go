package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Keyless signers (signed-by: - issuer: … subject: …). A keyless signature
// carries a short-lived certificate naming who signed it (its URI or email
// subject alternative name) and the OIDC issuer that vouched for them (the
// Fulcio issuer extension). Both are checked: a subject alone means
// nothing, since anyone can get a certificate for any subject from an
// issuer they run. The certificate must chain to a CA of the policy's
// trusted root (trustedroot.go), at a time a log or timestamp authority of
// that root vouches for.

// Identity is one keyless signer a signed-by list accepts.
type Identity struct {
	// Issuer is the OIDC issuer, compared exactly.
	Issuer string
	// Subject is compared exactly with the certificate's URI or email
	// subject alternative name; SubjectRegexp (RE2, anchored ^…$) instead
	// matches it. Exactly one is set.
	Subject       string
	SubjectRegexp string
	// Profile names the built-in profile the identity came from
	// (profiles.go), if any.
	Profile string
	Source  Position
}

// String names the identity as the policy does: "<issuer> <subject>", the
// regular expression shown as ~/<re>/.
func (id *Identity) String() string {
	if id.SubjectRegexp != "" {
		return id.Issuer + " ~/" + id.SubjectRegexp + "/"
	}
	return id.Issuer + " " + id.Subject
}

// identityEntry reads one signed-by entry that names an issuer: an
// identity. item is the entry's mapping; it has no key: field.
func (l *loader) identityEntry(item *yaml.Node) *Identity {
	id := &Identity{Source: Position{File: l.fileName, Line: item.Line, Column: item.Column}}
	var subjectNodes []*yaml.Node
	ok := true
	l.mapping(item, signedByKeys, func(key string, k, v *yaml.Node) {
		if key == "subject" || key == "subject-regexp" {
			subjectNodes = append(subjectNodes, k)
		}
		s, isStr := l.str(v, key)
		if !isStr {
			ok = false
			return
		}
		switch key {
		case "key", "profile":
			l.errorf(k, "signed-by: an entry names one of a key, an identity (issuer and subject) or a profile")
			ok = false
		case "issuer":
			if !l.issuer(v, s) {
				ok = false
			}
			id.Issuer = s
		case "subject":
			if s == "" {
				l.errorf(v, "signed-by: subject: expected the certificate's URI or email, got an empty string")
				ok = false
			}
			id.Subject = s
		case "subject-regexp":
			if !l.subjectRegexp(v, s) {
				ok = false
			}
			id.SubjectRegexp = s
		}
	})
	if id.Issuer == "" && ok {
		l.errorf(item, "signed-by: issuer: is required beside a subject: anyone can get a certificate for any subject from an issuer they run")
		ok = false
	}
	switch len(subjectNodes) {
	case 0:
		l.errorf(item, "signed-by: issuer %q needs subject: (exact) or subject-regexp: (^…$) to say who may sign", id.Issuer)
		ok = false
	case 2:
		l.errorf(subjectNodes[1], "signed-by: subject and subject-regexp are exclusive; give one")
		ok = false
	}
	if !ok {
		return nil
	}
	return id
}

// signedByKeys are the keys of a signed-by entry.
var signedByKeys = []string{"key", "issuer", "subject", "subject-regexp", "profile"}

// issuer checks an issuer: an absolute URL, as Fulcio writes it.
func (l *loader) issuer(v *yaml.Node, s string) bool {
	if s == "" || strings.TrimSpace(s) != s || !strings.Contains(s, "://") {
		l.errorf(v, "signed-by: issuer: expected the OIDC issuer URL, like https://token.actions.githubusercontent.com, got %q", s)
		return false
	}
	return true
}

// subjectRegexp checks a subject regular expression: RE2, and anchored at
// both ends. sigstore's matchers search, they do not match whole: an
// unanchored https://github\.com/acme/ accepts a certificate for
// https://evil.example/https://github.com/acme/ too.
func (l *loader) subjectRegexp(v *yaml.Node, s string) bool {
	if _, err := regexp.Compile(s); err != nil {
		l.errorf(v, "signed-by: subject-regexp: %v", err)
		return false
	}
	if !strings.HasPrefix(s, "^") || !strings.HasSuffix(s, "$") || strings.HasSuffix(s, `\$`) {
		l.errorf(v, "signed-by: subject-regexp: %q is not anchored; write ^…$ so that it matches the whole subject, not a part of it", s)
		return false
	}
	return true
}

// identitiesID is the part of a key set's ID its identities and trusted
// root make: the same signers and root give the same ID.
func identitiesID(ids []*Identity, root *TrustedRoot) []string {
	out := make([]string, 0, len(ids)+1)
	for _, id := range ids {
		re := "="
		if id.SubjectRegexp != "" {
			re = "~"
		}
		sum := sha256.Sum256([]byte(id.Issuer + "\x00" + re + id.Subject + id.SubjectRegexp))
		out = append(out, "identity:"+hex.EncodeToString(sum[:]))
	}
	if root != nil && len(ids) > 0 {
		out = append(out, "root:"+root.Digest)
	}
	return out
}

// attachTrustedRoot gives every key set with identities the policy's
// trusted root, once all files are read: trusted-root: may be set in any
// of them. Without one, the shipped public-good root is read.
func (l *loader) attachTrustedRoot() {
	if len(l.identitySets) == 0 {
		return
	}
	root := l.root
	if root == nil && !l.rootFailed {
		first := l.identitySets[0].Identities[0].Source
		r, err := l.readTrustedRoot(defaultTrustedRoot)
		if err != nil {
			l.problems = append(l.problems, Problem{Pos: first,
				Msg: fmt.Sprintf("signed-by: identities need a trusted root: no trusted-root: is set, and the shipped one %s: %v", defaultTrustedRoot, err)})
			return
		}
		root = r
	}
	if root == nil {
		return
	}
	l.policy.TrustedRoot = root
	for _, ks := range l.identitySets {
		ks.Root = root
		ks.setID()
	}
}

// describeIdentities names the identities for reasons.
func describeIdentities(ids []*Identity) []string {
	out := make([]string, 0, len(ids))
	for i, id := range ids {
		if id.Profile == "" {
			out = append(out, id.String())
		} else if i == 0 || ids[i-1].Profile != id.Profile {
			out = append(out, "profile "+id.Profile)
		}
	}
	return out
}
