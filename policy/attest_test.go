package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// attestPolicy writes src (with KEY and OTHER standing for two fixture
// keys) to a policy file and loads it.
func attestPolicy(t *testing.T, src string) (*Policy, error) {
	t.Helper()
	dir := t.TempDir()
	key, err := filepath.Abs("testdata/keys/ecdsa-p256.pub")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := filepath.Abs("testdata/keys/ed25519.pub")
	src = strings.NewReplacer("KEY", key, "OTHER", other).Replace(src)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadFiles([]string{path}, LoadOptions{InsecurePermissions: true})
}

const (
	provType = "https://slsa.dev/provenance/v1"
	vulnType = "https://cosign.sigstore.dev/attestation/vuln/v1"
)

// The issue's policy, with keys for both signers.
const issuePolicy = `allow:
  - image: registry.corp.example.com/apps/**
    attestations:
      - type: https://slsa.dev/provenance/v1
        signed-by:
          - key: KEY
        condition: 'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")'
      - type: https://cosign.sigstore.dev/attestation/vuln/v1
        signed-by:
          - key: OTHER
        condition: 'now - timestamp(predicate.metadata.scanFinishedOn) < duration("168h") && predicate.scanner.result.critical == 0'
  - image: registry.corp.example.com/tools/**
`

func mustAttestPolicy(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := attestPolicy(t, src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttestationsLoad(t *testing.T) {
	p := mustAttestPolicy(t, issuePolicy)
	if !p.RequiresAttestations() || p.RequiresSignatures() {
		t.Fatalf("RequiresAttestations %v RequiresSignatures %v", p.RequiresAttestations(), p.RequiresSignatures())
	}
	qs := p.Allow[0].Attestations
	if len(qs) != 2 || qs[0].Type != provType || qs[1].Type != vulnType {
		t.Fatalf("requirements %+v", qs)
	}
	if qs[0].ReadsNow() || !qs[1].ReadsNow() {
		t.Errorf("ReadsNow: provenance %v, scan %v; want false, true", qs[0].ReadsNow(), qs[1].ReadsNow())
	}
	if qs[0].Source.Line != 4 || qs[0].SignedBy.Keys[0].Type != "ECDSA P-256" || qs[1].SignedBy.Keys[0].Type != "Ed25519" {
		t.Errorf("first at line %d signed by %s, second by %s", qs[0].Source.Line, qs[0].SignedBy.Keys[0].Type, qs[1].SignedBy.Keys[0].Type)
	}
	if qs[0].ID == qs[1].ID {
		t.Error("two types with two signers share an ID")
	}
	if r := p.Allow[0].matchReason(); !strings.Contains(r, "attestations ["+provType+" "+vulnType+"]") {
		t.Errorf("the rule's summary does not name the types: %s", r)
	}
	if p.Allow[1].Attestations != nil {
		t.Error("a rule without attestations requires some")
	}
}

// Every problem at once, each at its line and column; a condition that
// does not compile is pointed at where in the file it goes wrong.
func TestAttestationsLoadErrors(t *testing.T) {
	_, err := attestPolicy(t, `allow:
  - image: a.example/x
    attestations:
      - type: https://slsa.dev/provenance/v1
        signed-by: [{key: KEY}]
        condition: predicate.builder.id.startsWith(1)
      - type: not a uri
        signed-by: [{key: KEY}]
      - type: https://example.com/scan
        condition: predicate.ok == true
      - signed-by: [{key: KEY}]
        bogus: 1
      - type: https://example.com/count
        signed-by: [{key: KEY}]
        condition: 'size(predicate.items)'
      - type: https://example.com/count
        signed-by: [{key: KEY}]
  - image: b.example/x
    attestations: []
  - image: c.example/x
    attestations:
      - type: https://example.com/t
        signed-by: [{key: KEY}]
        condition: |
          predicate.a == 1 &&
          predicate.b ==
deny:
  - image: d.example/x
    attestations: [{type: https://example.com/t, signed-by: [{key: KEY}]}]
`)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a load error", err)
	}
	want := []string{
		`:6:51: attestations: condition: found no matching overload for 'startsWith'`,
		`:7:15: attestations: type: "not a uri" is not a predicate type URI`,
		`:9:9: attestations: signed-by: is required`,
		`:11:9: attestations: type: is required`,
		`:12:9: unknown key "bogus" (expected one of: type, signed-by, condition)`,
		`:15:20: attestations: condition: is of type int; a condition must be a bool`,
		`:16:9: attestations: type https://example.com/count is listed twice (first at line 13)`,
		`:19:19: attestations: expected a list of {type: URI, signed-by: [...], condition: CEL}, got an empty list`,
		`:24:20: attestations: condition: Syntax error`,
		`(line 3, column 1 of the expression)`,
		`:29:19: attestations: only allow rules can require attestations`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("load error lacks %q:\n%s", w, msg)
		}
	}
}

// fakeAttestations answers per predicate type and records the questions.
type fakeAttestations struct {
	fakeSignatures
	byType map[string]AttestationResult
	asked  []string
}

func (f *fakeAttestations) Attestations(ref Ref, want *AttestationRequirement) AttestationResult {
	f.asked = append(f.asked, want.Type+" "+ref.Digest)
	return f.byType[want.Type]
}

func (f *fakeAttestations) Serves(string, string) (bool, error) {
	return false, errors.New("not asked here")
}

func statement(typ string, predicate string) Statement {
	var p any
	if err := json.Unmarshal([]byte(predicate), &p); err != nil {
		panic(err)
	}
	return Statement{PredicateType: typ, Predicate: p, Format: "cosign attestation",
		Key: &Key{Path: "/keys/k.pub"}, Subject: []any{map[string]any{"name": "x", "digest": map[string]any{"sha256": "aa"}}}}
}

func provenance(builder string) Statement {
	return statement(provType, `{"runDetails":{"builder":{"id":"`+builder+`"},"metadata":{"finishedOn":"2026-11-30T10:00:00Z"}}}`)
}

func scan(finished string, critical int) Statement {
	return statement(vulnType, `{"scanner":{"result":{"critical":`+strconv.Itoa(critical)+`}},"metadata":{"scanFinishedOn":"`+finished+`"}}`)
}

func verified(ss ...Statement) AttestationResult {
	return AttestationResult{Status: AttestationVerified, Statements: ss}
}

func TestAttestationVerdicts(t *testing.T) {
	p := mustAttestPolicy(t, issuePolicy)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	good := provenance("https://github.com/acme/builder")
	fresh := scan("2026-11-30T12:00:00Z", 0)
	img := Image{Names: []string{"registry.corp.example.com/apps/web:1", "registry.corp.example.com/apps/web@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}
	cases := []struct {
		name    string
		answers map[string]AttestationResult
		outcome Outcome
		reason  string
		field   string
	}{
		{"passing provenance and a fresh clean scan", map[string]AttestationResult{provType: verified(good), vulnType: verified(fresh)},
			Allowed, "attestation " + provType + " (signed by /keys/k.pub, cosign attestation, finished 2026-11-30T10:00:00Z) satisfies its condition",
			"verified:" + provType + " verified:" + vulnType},
		{"provenance from another builder", map[string]AttestationResult{provType: verified(provenance("https://github.com/evil/builder")), vulnType: verified(fresh)},
			Denied, "the condition of attestation " + provType + " (", "failed:" + provType},
		{"a stale scan", map[string]AttestationResult{provType: verified(good), vulnType: verified(scan("2026-11-20T12:00:00Z", 0))},
			Denied, "does not hold on the newest one (signed by /keys/k.pub, cosign attestation, finished 2026-11-20T12:00:00Z)", "failed:" + vulnType},
		{"a newer failing scan over an older passing one", map[string]AttestationResult{provType: verified(good),
			vulnType: verified(scan("2026-11-30T12:00:00Z", 0), scan("2026-12-01T06:00:00Z", 2))},
			Denied, "finished 2026-12-01T06:00:00Z): now - timestamp", "failed:" + vulnType},
		{"a newer passing scan over an older failing one", map[string]AttestationResult{provType: verified(good),
			vulnType: verified(scan("2026-12-01T06:00:00Z", 0), scan("2026-11-30T12:00:00Z", 2))},
			Allowed, "", ""},
		{"a scan signed by another key", map[string]AttestationResult{provType: verified(good),
			vulnType: {Status: AttestationInvalid, Reason: "no attestation of type " + vulnType + " signed by other.pub: 1 attestation by another key"}},
			Denied, "but no attestation of type " + vulnType + " signed by other.pub: 1 attestation by another key", "invalid:" + vulnType},
		{"no scan at all", map[string]AttestationResult{provType: verified(good), vulnType: {Status: AttestationMissing, Reason: "no attestation of type " + vulnType}},
			Denied, "but no attestation of type", "missing:" + vulnType},
		{"a scan the condition cannot be evaluated on", map[string]AttestationResult{provType: verified(good),
			vulnType: verified(statement(vulnType, `{"metadata":{"scanFinishedOn":"2026-11-30T12:00:00Z"}}`))},
			Denied, "could not be evaluated on the newest one", "failed:" + vulnType},
		{"a registry that does not answer", map[string]AttestationResult{provType: verified(good),
			vulnType: {Status: AttestationUnverifiable, Reason: "the attestations could not be read (connection refused)"}},
			Undecided, "", "unverifiable:" + vulnType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := &fakeAttestations{byType: c.answers}
			v := p.Judge(img, now, ev)
			if v.Outcome != c.outcome {
				t.Fatalf("outcome %s, want %s: %s (%v)", v.Outcome, c.outcome, v.Decision.Reason, v.Err)
			}
			if !strings.Contains(v.Decision.Reason, c.reason) {
				t.Errorf("reason %q lacks %q", v.Decision.Reason, c.reason)
			}
			if c.field != "" && (v.Decision.Attestation == nil || v.Decision.Attestation.Field() != c.field) {
				t.Errorf("attestation field %+v, want %s", v.Decision.Attestation, c.field)
			}
			if c.outcome == Undecided && !errors.Is(v.Err, ErrAttestationUnanswered) {
				t.Errorf("undecided for %v, want the attestations unanswered", v.Err)
			}
			if len(ev.asked) != 2 || ev.asked[0] != provType+" "+digestA {
				t.Errorf("asked %v, want each type once for %s", ev.asked, digestA)
			}
		})
	}
}

// A scan fresh today is stale in eight days: the same verified
// statements give another verdict at another time, judged again.
func TestAttestationFreshnessIsJudgedAtEachTime(t *testing.T) {
	p := mustAttestPolicy(t, issuePolicy)
	ev := &fakeAttestations{byType: map[string]AttestationResult{
		provType: verified(provenance("https://github.com/acme/b")), vulnType: verified(scan("2026-11-30T12:00:00Z", 0))}}
	img := Image{Names: []string{"registry.corp.example.com/apps/web:1", "registry.corp.example.com/apps/web@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}
	if v := p.Judge(img, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ev); v.Outcome != Allowed {
		t.Fatalf("a day after the scan: %s %s", v.Outcome, v.Decision.Reason)
	}
	if v := p.Judge(img, time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), ev); v.Outcome != Denied || !strings.Contains(v.Decision.Reason, "does not hold") {
		t.Fatalf("eight days after the scan: %s %s", v.Outcome, v.Decision.Reason)
	}
}

// Without an attestation source (no verifier, a fake of signatures only)
// the rule denies, fail closed; another rule still allows what it covers,
// and no attestation is asked for a name another rule allows.
func TestAttestationsFailClosedAndOtherRules(t *testing.T) {
	p := mustAttestPolicy(t, issuePolicy+`  - image: registry.corp.example.com/apps/legacy
`)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	v := p.Judge(Image{Names: []string{"registry.corp.example.com/apps/web:1", "registry.corp.example.com/apps/web@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}, now, nil)
	if v.Outcome != Denied || !strings.Contains(v.Decision.Reason, "but its attestations were not verified") {
		t.Errorf("no evidence: %s %s", v.Outcome, v.Decision.Reason)
	}
	d := p.DecideImageWith([]string{"registry.corp.example.com/apps/web:1"}, digestA, now, &fakeSignatures{})
	if d.Allowed || !strings.Contains(d.Decision.Reason, "not verified") {
		t.Errorf("a signature source only: %v %s", d.Allowed, d.Decision.Reason)
	}
	ev := &fakeAttestations{}
	if v := p.Judge(Image{Names: []string{"registry.corp.example.com/apps/legacy:1", "registry.corp.example.com/apps/legacy@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}, now, ev); v.Outcome != Allowed {
		t.Errorf("a later rule without attestations: %s %s", v.Outcome, v.Decision.Reason)
	}
	if v := p.Judge(Image{Names: []string{"registry.corp.example.com/tools/x:1", "registry.corp.example.com/tools/x@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}, now, ev); v.Outcome != Allowed || len(ev.asked) != 0 {
		t.Errorf("a rule without attestations: %s, asked %v", v.Outcome, ev.asked)
	}
	// A name with no digest (built or loaded here) can have no registry attestation.
	d = p.DecideImageWith([]string{"registry.corp.example.com/apps/web:1"}, "", now, &fakeAttestations{})
	if d.Allowed || !strings.Contains(d.Decision.Reason, "no repository digest") {
		t.Errorf("no digest: %v %s", d.Allowed, d.Decision.Reason)
	}
}

// A condition that would run away is stopped by the cost limit and denies.
func TestAttestationConditionCostLimit(t *testing.T) {
	p := mustAttestPolicy(t, `allow:
  - image: a.example/**
    attestations:
      - type: https://example.com/list
        signed-by: [{key: KEY}]
        condition: 'predicate.items.all(x, predicate.items.all(y, predicate.items.all(z, x + y + z >= 0.0)))'
`)
	items := strings.Repeat("1,", 999) + "1"
	ev := &fakeAttestations{byType: map[string]AttestationResult{"https://example.com/list": verified(statement("https://example.com/list", `{"items":[`+items+`]}`))}}
	v := p.Judge(Image{Names: []string{"a.example/x:1", "a.example/x@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}, testNow, ev)
	if v.Outcome != Denied || !strings.Contains(v.Decision.Reason, "could not be evaluated") || !strings.Contains(v.Decision.Reason, "cost") {
		t.Errorf("%s %s", v.Outcome, v.Decision.Reason)
	}
}

func TestNewest(t *testing.T) {
	old, mid, late := scan("2026-11-01T00:00:00Z", 0), scan("2026-11-15T00:00:00Z", 1), scan("2026-11-30T00:00:00Z", 2)
	untimed := statement(vulnType, `{"scanner":{}}`)
	signed := old
	signed.Signed = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) // a verified timestamp outranks the predicate's own
	sameAsLate := scan("2026-11-30T00:00:00Z", 0)
	cases := []struct {
		name string
		all  []Statement
		want []Statement
	}{
		{"the latest finish time, in any order", []Statement{mid, late, old}, []Statement{late}},
		{"untimed statements are older than any timed one", []Statement{untimed, old}, []Statement{old}},
		{"a verified signing time first", []Statement{late, signed}, []Statement{signed}},
		{"a tie decides together", []Statement{late, old, sameAsLate}, []Statement{late, sameAsLate}},
		{"none timed: all decide", []Statement{untimed, untimed}, []Statement{untimed, untimed}},
	}
	for _, c := range cases {
		got := Newest(c.all)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %d statements, want %d", c.name, len(got), len(c.want))
			continue
		}
		for i := range got {
			gt, _ := statementTime(got[i])
			wt, _ := statementTime(c.want[i])
			if !gt.Equal(wt) || fmt.Sprint(got[i].Predicate) != fmt.Sprint(c.want[i].Predicate) {
				t.Errorf("%s: statement %d is %v, want %v", c.name, i, got[i].Predicate, c.want[i].Predicate)
			}
		}
	}
}

// The page's example is a policy the loader takes, folded conditions and all.
func TestAttestationsPageExampleLoads(t *testing.T) {
	page, err := os.ReadFile(policyPagePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	start := strings.Index(text, "# ATTESTATIONS\n\n```\n")
	if start < 0 {
		t.Fatal("no ATTESTATIONS example in the page")
	}
	example := text[start+len("# ATTESTATIONS\n\n```\n"):]
	example = example[:strings.Index(example, "```")]
	example = strings.NewReplacer("/etc/pullguard/keys/builder.pub", "KEY", "/etc/pullguard/keys/scanner.pub", "OTHER").Replace(example)
	p := mustAttestPolicy(t, example)
	ev := &fakeAttestations{byType: map[string]AttestationResult{
		provType: verified(provenance("https://github.com/acme/b")), vulnType: verified(scan("2026-11-30T12:00:00Z", 0))}}
	img := Image{Names: []string{"registry.corp.example.com/apps/web:1", "registry.corp.example.com/apps/web@" + digestA}, Digest: digestA, DigestNamesProveOrigin: true}
	if v := p.Judge(img, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ev); v.Outcome != Allowed {
		t.Errorf("the example's own case: %s %s", v.Outcome, v.Decision.Reason)
	}
}

const policyPagePath = "../docs/pullguard-policy.5.md"

// A name an attestations rule covers may be allowed by its content: a
// guard must look at the content before removing it, never remove it on
// the name alone.
func TestAttestationNamesDependOnContent(t *testing.T) {
	p := mustAttestPolicy(t, issuePolicy)
	name := "registry.corp.example.com/apps/web:1"
	if _, denied := p.DeniedWhateverContent(name, testNow); denied {
		t.Errorf("%s is denied whatever its content, though its attestations may allow it", name)
	}
	if !p.ContentMatters(name, testNow) {
		t.Errorf("the content of %s does not matter, though its attestations may allow it", name)
	}
	if d := p.Decide(name, testNow); d.NeedsAttestations() == nil || d.Allowed {
		t.Errorf("judged without evidence: allowed=%v, needs %v", d.Allowed, d.NeedsAttestations())
	}
}

// TestAttestationsRefuseKeylessSigners: statements are verified by key, so
// a keyless signer in an attestation's signed-by is a load error rather
// than a signer that silently verifies nothing.
func TestAttestationsRefuseKeylessSigners(t *testing.T) {
	root, err := filepath.Abs("../packaging/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = attestPolicy(t, `trusted-root: `+root+`
allow:
  - image: a.example/x
    attestations:
      - type: https://slsa.dev/provenance/v1
        signed-by:
          - key: KEY
          - issuer: https://token.actions.githubusercontent.com
            subject: https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main
`)
	want := ":7:11: attestations: signed-by: keyless signers (issuer, subject) do not verify attestations yet"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want a load error containing %q", err, want)
	}
}
