package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Fingerprints of the fixture keys, from
// openssl pkey -pubin -in KEY -outform DER | sha256sum.
const (
	fpP256    = "sha256:adb6eeb987d13520c870f2783981226ba6e448211856e34dfa958f7ebc3a725f"
	fpEd25519 = "sha256:ffc062b368950be89cbb5245655ee0a6b1c19dd1d076bbdda713a12ff1e8d3fa"
)

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func TestSignedByLoads(t *testing.T) {
	p := loadFixture(t, "signed.yaml")
	if !p.RequiresSignatures() {
		t.Fatal("RequiresSignatures() = false for a policy with signed-by rules")
	}
	ks := p.Allow[0].SignedBy
	if ks == nil || len(ks.Keys) != 2 {
		t.Fatalf("first rule's key set = %+v, want two keys", ks)
	}
	if got := ks.Keys[0]; got.Fingerprint != fpP256 || got.Type != "ECDSA P-256" || got.Path != "testdata/keys/ecdsa-p256.pub" || got.Source.Line != 5 {
		t.Errorf("first key = %s %s %s line %d", got.Fingerprint, got.Type, got.Path, got.Source.Line)
	}
	if got := ks.Keys[1]; got.Fingerprint != fpEd25519 || got.Type != "Ed25519" {
		t.Errorf("second key = %s %s", got.Fingerprint, got.Type)
	}
	if got := p.Allow[2].SignedBy.Keys[0].Type; got != "RSA 2048" {
		t.Errorf("RSA key type = %q", got)
	}
	if n := len(p.Allow[3].SignedBy.Keys); n != 1 {
		t.Errorf("a key listed twice is kept %d times, want once", n)
	}
	if p.Allow[1].SignedBy != nil {
		t.Error("a rule without signed-by requires signatures")
	}
	if !strings.Contains(p.Allow[0].matchReason(), "signed-by [testdata/keys/ecdsa-p256.pub, testdata/keys/ed25519.pub]") {
		t.Errorf("summary does not name the keys: %s", p.Allow[0].matchReason())
	}
}

// signature-repository says where cosign put the signatures
// (COSIGN_REPOSITORY): kept in the policy's normal form, named in the
// rule's summary, and part of the key set's identity, so that a cached
// answer about one place is not taken for the other.
func TestSignatureRepositoryLoads(t *testing.T) {
	p := loadFixture(t, "signed-elsewhere.yaml")
	elsewhere, beside := p.Allow[0].SignedBy, p.Allow[1].SignedBy
	if want := "registry.example.com/signatures/store"; elsewhere.Repository != want {
		t.Errorf("Repository = %q, want %q (the host in its one spelling)", elsewhere.Repository, want)
	}
	if got := elsewhere.SignaturesOf("registry.example.com/approved/app"); got != "registry.example.com/signatures/store" {
		t.Errorf("signatures of an image looked up in %q", got)
	}
	if got := beside.SignaturesOf("registry.example.com/other/app"); beside.Repository != "" || got != "registry.example.com/other/app" {
		t.Errorf("without signature-repository: Repository %q, signatures looked up in %q, want the image's own", beside.Repository, got)
	}
	if elsewhere.ID == beside.ID {
		t.Error("the same key with and without signature-repository has one key set ID")
	}
	if !strings.Contains(p.Allow[0].matchReason(), "signed-by [testdata/keys/ecdsa-p256.pub] signature-repository registry.example.com/signatures/store") {
		t.Errorf("summary does not say where the signatures are: %s", p.Allow[0].matchReason())
	}
}

// The key set's identity is its keys, not their order or file names, so
// cached verification results carry over between rules and reloads.
func TestKeySetIDIsTheKeys(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ecdsa-p256.pub", "ed25519.pub"} {
		data, err := os.ReadFile("testdata/keys/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "copy-of-"+f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, `allow:
  - image: registry.example.com/x
    signed-by: [{key: copy-of-ed25519.pub}, {key: copy-of-ecdsa-p256.pub}]
`)
	p, err := LoadFiles([]string{pol}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Allow[0].SignedBy.ID, loadFixture(t, "signed.yaml").Allow[0].SignedBy.ID; got != want {
		t.Errorf("same keys, other order and names: ID %s, want %s", got, want)
	}
}

func TestSignedByKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "team.pub")
	if err := os.WriteFile(key, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o666); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, "allow:\n  - image: registry.example.com/x\n    signed-by:\n      - key: "+key+"\n")
	_, err = LoadFiles([]string{pol}, LoadOptions{})
	want := pol + ":4:14: signed-by: key " + key + ": key file is writable by group or others (mode 0666)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("loading with a world-writable key: %v\nwant an error starting %q", err, want)
	}
	if _, err := LoadFiles([]string{pol}, LoadOptions{InsecurePermissions: true}); err != nil {
		t.Errorf("--insecure-policy-permissions does not cover key files: %v", err)
	}
}

// A changed key is a changed policy: the hash in every log entry says so.
func TestSignedByKeyInPolicyHash(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "team.pub")
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, "allow:\n  - image: registry.example.com/x\n    signed-by: [{key: team.pub}]\n")
	hashWith := func(src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, key, string(data))
		p, err := LoadFiles([]string{pol}, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Hash
	}
	if hashWith("testdata/keys/ed25519.pub") == hashWith("testdata/keys/ecdsa-p256.pub") {
		t.Error("replacing the key file left the policy hash unchanged")
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func evidence(p *Policy, rule int, digest string, st SignatureStatus, reason string) *Evidence {
	ks := p.Allow[rule].SignedBy
	res := SignatureResult{Status: st, Reason: reason}
	if st == SignatureVerified {
		res.Key = ks.Keys[0]
	}
	return &Evidence{Digest: digest, Results: map[string]SignatureResult{ks.ID: res}}
}

func TestDecideSignatures(t *testing.T) {
	p := loadFixture(t, "signed.yaml")
	parse := func(s string) Ref {
		r, err := ParseRef(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	approved := parse("registry.example.com/approved/app:1.0@" + digestA)

	// Without evidence the rule does not match, and the decision says
	// which keys the caller must verify.
	d := p.DecideRef(approved, testNow)
	if d.Allowed {
		t.Fatal("allowed without signature evidence")
	}
	if ks := d.NeedsEvidence(); ks == nil || ks.ID != p.Allow[0].SignedBy.ID {
		t.Fatalf("NeedsEvidence() = %v, want the first rule's key set", ks)
	}
	if d.RuleSource() != "testdata/signed.yaml:3" || !strings.Contains(d.Reason, "but its signature was not verified") {
		t.Errorf("decision without evidence: %s %q", d.RuleSource(), d.Reason)
	}
	if d.Signature.Result.Field() != "unverifiable" {
		t.Errorf("journal field without evidence = %q", d.Signature.Result.Field())
	}

	d = p.DecideEvidence(approved, testNow, evidence(p, 0, digestA, SignatureVerified, "signed by testdata/keys/ecdsa-p256.pub"))
	if !d.Allowed || d.RuleSource() != "testdata/signed.yaml:3" || d.NeedsEvidence() != nil {
		t.Fatalf("verified evidence: allowed=%v rule=%s needs=%v", d.Allowed, d.RuleSource(), d.NeedsEvidence())
	}
	if !strings.HasSuffix(d.Reason, ": signed by testdata/keys/ecdsa-p256.pub") {
		t.Errorf("reason does not say which key verified: %q", d.Reason)
	}
	if got := d.Signature.Result.Field(); got != "verified:"+fpP256 {
		t.Errorf("journal field = %q", got)
	}

	for _, c := range []struct {
		status SignatureStatus
		reason string
	}{
		{SignatureMissing, "no signature for " + digestA},
		{SignatureInvalid, "the only signature is by another key"},
		{SignatureUnverifiable, "registry unreachable: connection refused"},
	} {
		d = p.DecideEvidence(approved, testNow, evidence(p, 0, digestA, c.status, c.reason))
		if d.Allowed || d.NeedsEvidence() != nil {
			t.Errorf("%s: allowed=%v needs=%v", c.status, d.Allowed, d.NeedsEvidence())
		}
		want := "matches allow rule registry.example.com/approved/** signed-by [testdata/keys/ecdsa-p256.pub, testdata/keys/ed25519.pub], but " + c.reason
		if d.Reason != want {
			t.Errorf("%s: reason %q\nwant %q", c.status, d.Reason, want)
		}
		if d.Signature.Result.Field() != string(c.status) {
			t.Errorf("%s: journal field %q", c.status, d.Signature.Result.Field())
		}
	}

	// Evidence about another digest is no evidence about this one.
	d = p.DecideEvidence(approved, testNow, evidence(p, 0, digestB, SignatureVerified, "signed"))
	if d.Allowed || !strings.Contains(d.Reason, "evidence is for "+digestB) {
		t.Errorf("evidence for another digest: allowed=%v %q", d.Allowed, d.Reason)
	}

	// A later rule that needs no signature still allows what it names.
	legacy := parse("registry.example.com/approved/legacy:1.2@" + digestA)
	d = p.DecideEvidence(legacy, testNow, evidence(p, 0, digestA, SignatureMissing, "no signature"))
	if !d.Allowed || d.RuleSource() != "testdata/signed.yaml:7" || d.Signature != nil {
		t.Errorf("unsigned legacy exception: allowed=%v rule=%s sig=%v", d.Allowed, d.RuleSource(), d.Signature)
	}

	// Deny rules win before any signature is asked for.
	d = p.DecideRef(parse("registry.example.com/approved/app:latest"), testNow)
	if d.Allowed || d.Signature != nil || d.Rule == nil || d.Rule.Kind != Deny {
		t.Errorf("latest: allowed=%v signature=%v rule=%v", d.Allowed, d.Signature, d.Rule)
	}

	// Two rules name the team's images with different keys: the second
	// key set is asked for once the first has failed, and allows.
	team := parse("registry.example.com/team/app:2@" + digestA)
	ev := evidence(p, 2, digestA, SignatureInvalid, "signed by another key")
	d = p.DecideEvidence(team, testNow, ev)
	if ks := d.NeedsEvidence(); ks == nil || ks.ID != p.Allow[3].SignedBy.ID {
		t.Fatalf("after the first key set failed, NeedsEvidence() = %v, want the second rule's", ks)
	}
	ev.Results[p.Allow[3].SignedBy.ID] = SignatureResult{Status: SignatureVerified, Key: p.Allow[3].SignedBy.Keys[0], Reason: "signed by P-384"}
	d = p.DecideEvidence(team, testNow, ev)
	if !d.Allowed || d.RuleSource() != "testdata/signed.yaml:12" {
		t.Errorf("second key set verified: allowed=%v rule=%s %q", d.Allowed, d.RuleSource(), d.Reason)
	}
	ev.Results[p.Allow[3].SignedBy.ID] = SignatureResult{Status: SignatureMissing, Reason: "no signature"}
	d = p.DecideEvidence(team, testNow, ev)
	if d.Allowed || d.RuleSource() != "testdata/signed.yaml:9" || !strings.HasSuffix(d.Reason, "but signed by another key") {
		t.Errorf("both failed: the first rule's reason is reported: %s %q", d.RuleSource(), d.Reason)
	}
}

// default: allow does not let an image through that a signature rule names
// but whose signature failed: the operator asked for signatures there.
func TestDecideSignaturesDefaultAllow(t *testing.T) {
	p, err := Parse(Source{Name: "p.yaml", Data: []byte("default: allow\nallow:\n  - image: registry.example.com/approved/**\n    signed-by: [{key: testdata/keys/ed25519.pub}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide("registry.example.com/approved/x:1", testNow)
	if d.Allowed || d.NeedsEvidence() == nil {
		t.Errorf("unsigned under default allow: allowed=%v", d.Allowed)
	}
	if d := p.Decide("registry.example.com/other/x:1", testNow); !d.Allowed {
		t.Errorf("a name no rule covers is not allowed by default: %q", d.Reason)
	}
}

// A key path naming a FIFO is refused at once, not waited on.
func TestSignedByKeyFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "team.pub")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	writeFile(t, pol, "allow:\n  - image: registry.example.com/x\n    signed-by: [{key: team.pub}]\n")
	done := make(chan error, 1)
	go func() { _, err := LoadFiles([]string{pol}, LoadOptions{}); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "signed-by: key "+fifo+": not a regular file") {
			t.Errorf("FIFO key: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loading a policy whose key is a FIFO hangs")
	}
}

// fakeSignatures answers per digest and counts what it is asked.
type fakeSignatures struct {
	byDigest map[string]SignatureStatus
	asked    []string
}

func (f *fakeSignatures) Signature(ref Ref, keys *KeySet) SignatureResult {
	f.asked = append(f.asked, ref.String)
	st, ok := f.byDigest[ref.Digest]
	if !ok {
		st = SignatureMissing
	}
	return SignatureResult{Status: st, Reason: "fake says " + string(st)}
}

func TestDecideImageWithSignatures(t *testing.T) {
	p := loadFixture(t, "signed.yaml")
	sigs := &fakeSignatures{byDigest: map[string]SignatureStatus{digestA: SignatureVerified, digestB: SignatureUnverifiable}}
	repo := "registry.example.com/approved/app"

	// A tag pulled from the registry: judged with its repository digest.
	d := p.DecideImageWith([]string{repo + ":1.0", repo + "@" + digestA}, "", testNow, sigs)
	if !d.Allowed || d.Unverifiable() != nil {
		t.Fatalf("signed image: allowed=%v reason=%q", d.Allowed, d.Decision.Reason)
	}
	if len(d.Denied()) != 0 {
		t.Errorf("a name of a signed image is denied: %+v", d.Denied())
	}
	if len(sigs.asked) == 0 || !strings.Contains(sigs.asked[0], "@"+digestA) {
		t.Errorf("the source was asked %v, want the digest %s", sigs.asked, digestA)
	}

	// The same names without a source stay denied (fail closed).
	if d := p.DecideImage([]string{repo + ":1.0", repo + "@" + digestA}, "", testNow); d.Allowed || d.Decision.NeedsEvidence() == nil {
		t.Errorf("without a source: allowed=%v needs=%v", d.Allowed, d.Decision.NeedsEvidence())
	}

	// Unsigned: denied, a definite answer.
	d = p.DecideImageWith([]string{repo + ":2.0"}, digestA[:len(digestA)-1]+"c", testNow, sigs)
	if d.Allowed || d.Unverifiable() != nil || d.Decision.Signature.Result.Field() != "missing" {
		t.Errorf("unsigned image: allowed=%v field=%q", d.Allowed, d.Decision.Signature.Result.Field())
	}

	// Unreachable registry: denied, but Unverifiable says no name may be acted on.
	d = p.DecideImageWith([]string{repo + ":3.0"}, digestB, testNow, sigs)
	if d.Allowed || d.Unverifiable() == nil || d.Unverifiable().Name != repo+":3.0" {
		t.Errorf("unverifiable image: allowed=%v unverifiable=%v", d.Allowed, d.Unverifiable())
	}

	// Built or loaded: no digest, denied as unsigned, saying why, without asking.
	sigs.asked = nil
	d = p.DecideImageWith([]string{repo + ":local"}, "", testNow, sigs)
	if d.Allowed || d.Unverifiable() != nil || len(sigs.asked) != 0 {
		t.Errorf("image without digest: allowed=%v unverifiable=%v asked=%v", d.Allowed, d.Unverifiable(), sigs.asked)
	}
	if !strings.Contains(d.Decision.Reason, "no repository digest") || d.Decision.Signature.Result.Field() != "missing" {
		t.Errorf("image without digest: reason %q field %q", d.Decision.Reason, d.Decision.Signature.Result.Field())
	}

	// Names no signed-by rule matches never reach the source.
	sigs.asked = nil
	p.DecideImageWith([]string{"registry.example.com/other/app:1"}, digestA, testNow, sigs)
	if len(sigs.asked) != 0 {
		t.Errorf("the source was asked about a name no signed-by rule matches: %v", sigs.asked)
	}
}

// A key given outside a policy (the policy artifact's) is read under the
// same rule and formats as a policy's keys, and its set has the same
// identity as a rule naming the same keys.
func TestLoadKeySet(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "cosign.pub")
	copyFile(t, "testdata/keys/ecdsa-p256.pub", good, 0o644)
	ks, err := LoadKeySet([]string{good, good})
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys) != 1 || ks.Keys[0].Fingerprint != fpP256 || ks.Keys[0].Path != good {
		t.Errorf("key set = %+v, want the one P-256 key once", ks.Keys)
	}
	rule := loadFixture(t, "signed.yaml").Allow[0].SignedBy
	both, err := LoadKeySet([]string{"testdata/keys/ed25519.pub", "testdata/keys/ecdsa-p256.pub"})
	if err != nil {
		t.Fatal(err)
	}
	if both.ID != rule.ID {
		t.Errorf("ID %q, want the rule's %q for the same keys", both.ID, rule.ID)
	}

	writable := filepath.Join(dir, "writable.pub")
	copyFile(t, "testdata/keys/ecdsa-p256.pub", writable, 0o666)
	notPEM := filepath.Join(dir, "key.txt")
	copyFile(t, "testdata/signed.yaml", notPEM, 0o644)
	for path, want := range map[string]string{
		writable:                      "writable by group or others",
		notPEM:                        "not a PEM file",
		filepath.Join(dir, "missing"): "does not exist",
	} {
		if _, err := LoadKeySet([]string{good, path}); err == nil || !strings.Contains(err.Error(), "key "+path+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadKeySet(%s) = %v, want an error naming it: %s", path, err, want)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}
