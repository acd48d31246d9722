package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shippedRoot is the public-good root the package installs.
const shippedRoot = "../../packaging/trusted_root.json"

func parseIdentities(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse(Source{Name: "testdata/identities.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Keys and identities mix in one list; identities keep their issuer and
// subject as written and name themselves in the rule's summary.
func TestIdentitiesLoad(t *testing.T) {
	p := parseIdentities(t, `
trusted-root: `+shippedRoot+`
allow:
  - image: ghcr.io/acme/**
    signed-by:
      - issuer: https://token.actions.githubusercontent.com
        subject-regexp: '^https://github\.com/acme/[^/]+/\.github/workflows/release\.ya?ml@refs/tags/v.+$'
      - key: keys/ed25519.pub
      - issuer: https://accounts.google.com
        subject: krel-trust@k8s-releng-prod.iam.gserviceaccount.com
`)
	ks := p.Allow[0].SignedBy
	if len(ks.Keys) != 1 || len(ks.Identities) != 2 {
		t.Fatalf("signed-by = %d keys, %d identities; want 1 and 2", len(ks.Keys), len(ks.Identities))
	}
	id := ks.Identities[1]
	if id.Issuer != "https://accounts.google.com" || id.Subject != "krel-trust@k8s-releng-prod.iam.gserviceaccount.com" || id.SubjectRegexp != "" || id.Source.Line != 9 {
		t.Errorf("identity = %+v", id)
	}
	if ks.Root == nil || ks.Root != p.TrustedRoot || ks.Root.Path != "../packaging/trusted_root.json" {
		t.Fatalf("key set's root = %+v, want the policy's trusted-root", ks.Root)
	}
	want := "signed-by [testdata/keys/ed25519.pub, https://token.actions.githubusercontent.com ~/^https://github\\.com/acme/"
	if !strings.Contains(p.Allow[0].matchReason(), want) {
		t.Errorf("summary %q does not name the signers (%q)", p.Allow[0].matchReason(), want)
	}
}

// The shipped public-good root parses, lists what it should, and is dated.
func TestShippedTrustedRoot(t *testing.T) {
	data, err := os.ReadFile("../packaging/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseTrustedRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	if r.CAs < 1 || r.Logs < 1 || r.CTLogs < 1 || r.TSAs < 1 {
		t.Errorf("public-good root lists %d CAs, %d logs, %d CT logs, %d TSAs", r.CAs, r.Logs, r.CTLogs, r.TSAs)
	}
	if r.Taken.IsZero() {
		t.Errorf("the shipped root %s has no date in shippedRoots", r.Digest)
	}
}

// An identity's ID covers issuer, subject, its kind (exact or regexp) and
// the root: each change makes another cache entry, never a shared one.
func TestIdentitySetID(t *testing.T) {
	id := func(issuer, subjectKey, subject, root string) string {
		p := parseIdentities(t, "trusted-root: "+root+"\nallow:\n  - image: a.example/**\n    signed-by:\n      - issuer: "+issuer+"\n        "+subjectKey+": '"+subject+"'\n")
		return p.Allow[0].SignedBy.ID
	}
	base := id("https://a.example", "subject", "^x$", shippedRoot)
	for name, other := range map[string]string{
		"issuer":  id("https://b.example", "subject", "^x$", shippedRoot),
		"kind":    id("https://a.example", "subject-regexp", "^x$", shippedRoot),
		"subject": id("https://a.example", "subject", "^y$", shippedRoot),
		"root":    id("https://a.example", "subject", "^x$", "roots/other-root.json"),
	} {
		if other == base {
			t.Errorf("another %s gives the same key set ID", name)
		}
	}
	if again := id("https://a.example", "subject", "^x$", shippedRoot); again != base {
		t.Error("the same identity and root give another ID")
	}
}

// Without trusted-root: the shipped root is read; when it is missing the
// load fails at the first identity, saying what to do.
func TestDefaultTrustedRoot(t *testing.T) {
	defer func(old string) { defaultTrustedRoot = old }(defaultTrustedRoot)
	abs, err := filepath.Abs("../packaging/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	defaultTrustedRoot = abs
	doc := "allow:\n  - image: a.example/**\n    signed-by:\n      - issuer: https://a.example\n        subject: me@a.example\n"
	p := parseIdentities(t, doc)
	if p.TrustedRoot == nil || p.TrustedRoot.Path != abs || p.TrustedRoot.Source.File != "" {
		t.Fatalf("default root = %+v", p.TrustedRoot)
	}
	taken := p.TrustedRoot.Taken
	if w := p.TrustedRootWarning(taken.Add(DefaultTrustedRootMaxAge - time.Hour)); w != "" {
		t.Errorf("a root younger than the maximum age warns: %s", w)
	}
	w := p.TrustedRootWarning(taken.Add(DefaultTrustedRootMaxAge + 48*time.Hour))
	if !strings.Contains(w, "was taken "+taken.Format(time.DateOnly)+", 182 days ago (trusted-root-max-age 180 days)") {
		t.Errorf("old root warning = %q", w)
	}
	short := parseIdentities(t, "trusted-root-max-age: 30d\n"+doc)
	if w := short.TrustedRootWarning(taken.Add(31 * 24 * time.Hour)); !strings.Contains(w, "trusted-root-max-age 30 days") {
		t.Errorf("trusted-root-max-age: 30d not honoured: %q", w)
	}

	defaultTrustedRoot = filepath.Join(t.TempDir(), "missing.json")
	_, err = Parse(Source{Name: "testdata/identities.yaml", Data: []byte(doc)})
	want := "testdata/identities.yaml:4:9: signed-by: identities need a trusted root: no trusted-root: is set, and the shipped one " + defaultTrustedRoot + ": file does not exist"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %s", err, want)
	}
}

// A verified identity is named in the journal by what the certificate said.
func TestIdentityField(t *testing.T) {
	r := SignatureResult{Status: SignatureVerified, Identity: &Identity{Issuer: "https://a.example", Subject: "me@a.example"}, Signer: "https://a.example me@a.example"}
	if got := r.Field(); got != "identity:https://a.example me@a.example" {
		t.Errorf("Field() = %q", got)
	}
}

// A profile expands to its reviewed signers, each of which then
// constrains like a spelled-out one; the rule's summary names the profile
// and validate shows what it expands to.
func TestProfiles(t *testing.T) {
	p := parseIdentities(t, `
trusted-root: `+shippedRoot+`
allow:
  - image: registry.k8s.io/**
    signed-by:
      - profile: kubernetes
      - issuer: https://accounts.google.com
        subject: someone@example.com
`)
	ids := p.Allow[0].SignedBy.Identities
	if len(ids) != 4 || ids[0].Profile != "kubernetes" || ids[0].Issuer != "https://accounts.google.com" ||
		ids[0].Subject != "krel-trust@k8s-releng-prod.iam.gserviceaccount.com" || ids[0].Source.Line != 6 || ids[3].Profile != "" {
		t.Fatalf("identities = %+v", ids)
	}
	if r := p.Allow[0].matchReason(); !strings.Contains(r, "signed-by [profile kubernetes, https://accounts.google.com someone@example.com]") {
		t.Errorf("summary = %s", r)
	}
	used := p.ProfilesUsed()
	if len(used) != 1 || !strings.HasPrefix(used[0], "profile kubernetes: https://accounts.google.com krel-trust@k8s-releng-prod.iam.gserviceaccount.com, ") {
		t.Errorf("ProfilesUsed() = %q", used)
	}
	for _, name := range ProfileNames() {
		for _, id := range profiles[name] {
			if id.Issuer == "" || (id.Subject == "") == (id.SubjectRegexp == "") {
				t.Errorf("profile %s: %+v does not constrain both fields", name, id)
			}
		}
	}
}

// The trusted root's content is part of the policy hash: a replaced root
// is a new policy, though no policy file changed.
func TestTrustedRootInHash(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	hash := func(src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(root, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Parse(Source{Name: filepath.Join(dir, "policy.yaml"), Data: []byte("trusted-root: root.json\nallow:\n  - image: a.example/**\n    signed-by:\n      - issuer: https://a.example\n        subject: me@a.example\n")})
		if err != nil {
			t.Fatal(err)
		}
		return p.Hash
	}
	if hash("../packaging/trusted_root.json") == hash("testdata/roots/other-root.json") {
		t.Error("another trusted root at the same path gives the same policy hash")
	}
}

// The trusted root follows the key files' rule: one that others could
// write is a load error at trusted-root:.
func TestTrustedRootPermissions(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../packaging/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(root, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o666); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, "trusted-root: "+root+"\nallow:\n  - image: a.example/**\n    signed-by:\n      - issuer: https://a.example\n        subject: me@a.example\n")
	_, err = LoadFiles([]string{pol}, LoadOptions{})
	want := pol + ":1:15: trusted-root " + root + ": trusted root is writable by group or others (mode 0666)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("loading with a world-writable trusted root: %v\nwant an error starting %q", err, want)
	}
	if _, err := LoadFiles([]string{pol}, LoadOptions{InsecurePermissions: true}); err != nil {
		t.Errorf("--insecure-policy-permissions does not cover the trusted root: %v", err)
	}
}
