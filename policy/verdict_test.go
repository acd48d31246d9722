package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// askedEvidence is an EvidenceSource that records every question and
// answers from its tables: served repositories, failing repositories, and
// one signature status for every key set.
type askedEvidence struct {
	served  map[string]bool  // repository -> serves the digest
	fail    map[string]error // repository -> no answer
	origins []string
	sig     SignatureStatus
	asked   []string // "serves repo digest" and "signature ref keys"
}

func (e *askedEvidence) Serves(repository, digest string) (bool, error) {
	e.asked = append(e.asked, "serves "+repository)
	if err := e.fail[repository]; err != nil {
		return false, err
	}
	return e.served[repository], nil
}

func (e *askedEvidence) Signature(ref Ref, keys *KeySet) SignatureResult {
	e.asked = append(e.asked, "signature "+ref.String)
	return SignatureResult{Status: e.sig, Reason: "status " + string(e.sig)}
}

// Attestations: no rule in these tests asks for attestations.
func (e *askedEvidence) Attestations(ref Ref, want *AttestationRequirement) AttestationResult {
	e.asked = append(e.asked, "attestations "+ref.String)
	return AttestationResult{}
}

// originEvidence adds KnownOrigins.
type originEvidence struct{ *askedEvidence }

func (e originEvidence) Origins(string) []string { return e.origins }

const (
	vA  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	vB  = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	vID = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func verdictPolicy(t *testing.T, local string) *Policy {
	return parsePolicy(t, "local-images: "+local+`
allow: [{image: reg.example/approved/**}, {image: reg.example/other/**}, {image: "docker.io/library/*", tags: ["1.*"]}]
deny: [{image: reg.example/evil/**}]
`)
}

// parsePolicy parses one policy file's text.
func parsePolicy(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse(Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestJudge pins the three outcomes and, above all, what is asked for each:
// evidence is asked only when a rule needs it, never when names settle it.
func TestJudge(t *testing.T) {
	deny, allow := verdictPolicy(t, "deny"), verdictPolicy(t, "allow")
	down := errors.New("connection refused")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		p        *Policy
		img      Image
		ev       askedEvidence
		origins  []string
		outcome  Outcome
		names    []Outcome // per name, when set
		asked    []string
		reason   string // part of the deciding reason
		vouched  string
		errIsNil bool
	}{
		"names only: an allowed tag asks nothing": {
			p: allow, img: Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA},
			outcome: Allowed, reason: "allow rule"},
		"a denied name asks nothing": {
			p: deny, img: Image{Names: []string{"reg.example/evil/x:1"}, Digest: vA},
			outcome: Denied, reason: "deny rule"},
		"a name no rule allows asks nothing": {
			p: deny, img: Image{Names: []string{"quay.io/x/y:1"}, Digest: vA},
			outcome: Denied, reason: "no allow rule"},
		"dockerd's own store: its repository digest proves origin, nobody is asked": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1", "reg.example/approved/x@" + vA}, DigestNamesProveOrigin: true},
			outcome: Allowed, vouched: "reg.example/approved/x@" + vA},
		"dockerd's own store: no digest name is local content, nobody is asked": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}, DigestNamesProveOrigin: true},
			outcome: Denied, reason: ReasonLocalContent},
		"containerd: the allowed name's repository is asked and serves": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA},
			ev:      askedEvidence{served: map[string]bool{"reg.example/approved/x": true}},
			outcome: Allowed, asked: []string{"serves reg.example/approved/x"}, vouched: "reg.example/approved/x@" + vA},
		"containerd: not served anywhere is local content": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA},
			outcome: Denied, asked: []string{"serves reg.example/approved/x"}, reason: ReasonLocalContent},
		"containerd: an unreachable registry leaves it undecided": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1", "reg.example/evil/x:1", vID}, Digest: vA},
			ev:      askedEvidence{fail: map[string]error{"reg.example/approved/x": down}},
			outcome: Undecided, names: []Outcome{Undecided, Denied, Undecided},
			asked: []string{"serves reg.example/approved/x"}, reason: ReasonLocalContent},
		"containerd: one repository serving is enough; the rest are not asked": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1", "reg.example/other/y:2", "reg.example/approved/z:3"}, Digest: vA},
			ev:      askedEvidence{fail: map[string]error{"reg.example/approved/x": down}, served: map[string]bool{"reg.example/other/y": true}},
			outcome: Allowed, names: []Outcome{Allowed, Allowed, Allowed},
			asked: []string{"serves reg.example/approved/x", "serves reg.example/other/y"}, errIsNil: true},
		"containerd: only the repositories of allowed names are asked": {
			p: deny, img: Image{Names: []string{"reg.example/evil/x:1", "quay.io/a/b:1", "reg.example/approved/x:1"}, Digest: vA},
			outcome: Denied, asked: []string{"serves reg.example/approved/x"}},
		"containerd: a denied image asks nothing": {
			p: deny, img: Image{Names: []string{"reg.example/evil/x:1", vID}, Digest: vA},
			outcome: Denied, names: []Outcome{Denied, Denied}},
		"containerd: known origins are asked first": {
			p: deny, img: Image{Names: []string{"reg.example/approved/renamed:2"}, Digest: vA},
			ev:      askedEvidence{served: map[string]bool{"reg.example/other/first": true}},
			origins: []string{"reg.example/evil/was", "reg.example/other/first"},
			outcome: Allowed, asked: []string{"serves reg.example/other/first"}},
		"Docker 29: a digest name of the store proves nothing and its repository is asked": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x@" + vA}, Digest: vA},
			outcome: Denied, names: []Outcome{Denied}, asked: []string{"serves reg.example/approved/x"}},
		"Docker 29: the registry's yes allows the digest name too": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1", "reg.example/approved/x@" + vA}, Digest: vA},
			ev:      askedEvidence{served: map[string]bool{"reg.example/approved/x": true}},
			outcome: Allowed, names: []Outcome{Allowed, Allowed}, asked: []string{"serves reg.example/approved/x"}},
		"Docker 29: a denied digest name is judged, not set aside": {
			p: deny, img: Image{Names: []string{"reg.example/evil/x@" + vA}, Digest: vA},
			outcome: Denied, reason: "deny rule"},
		"Docker 29: no answer leaves the set-aside digest name undecided": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1", "reg.example/approved/x@" + vA}, Digest: vA},
			ev:      askedEvidence{fail: map[string]error{"reg.example/approved/x": down}},
			outcome: Undecided, names: []Outcome{Undecided, Undecided}, asked: []string{"serves reg.example/approved/x"}},
		"a store whose digest names prove origin is not asked about content without one": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA, DigestNamesProveOrigin: true},
			outcome: Denied, reason: ReasonLocalContent},
		"containerd without a record: nothing to ask about, undecided": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}},
			outcome: Undecided, names: []Outcome{Undecided}},
		"containerd without a record: a denied name is denied": {
			p: deny, img: Image{Names: []string{"reg.example/evil/x:1"}},
			outcome: Denied},
		"a tag no rule allows is denied without asking, whatever the registry would say": {
			p: deny, img: Image{Names: []string{"docker.io/library/nginx:latest", vID}, Digest: vA},
			ev:      askedEvidence{served: map[string]bool{"docker.io/library/nginx": true}},
			outcome: Denied, names: []Outcome{Denied, Denied}, asked: nil},
		"a pull in progress is its own origin": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA, Pulling: true},
			outcome: Allowed},
		"a name pinning other content is denied without asking": {
			p: deny, img: Image{Names: []string{"reg.example/approved/x@" + vB}, Digest: vA, DigestNamesProveOrigin: true},
			outcome: Denied, reason: "pins"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ev := c.ev
			var src EvidenceSource = &ev
			if c.origins != nil {
				ev.origins = c.origins
				src = originEvidence{&ev}
			}
			v := c.p.Judge(c.img, now, src)
			if v.Outcome != c.outcome {
				t.Errorf("outcome %s, want %s (%s)", v.Outcome, c.outcome, v.Decision.Reason)
			}
			if !slices.Equal(ev.asked, c.asked) {
				t.Errorf("asked %q, want %q", ev.asked, c.asked)
			}
			if !strings.Contains(v.Decision.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", v.Decision.Reason, c.reason)
			}
			if len(v.Names) != len(c.img.Names) {
				t.Fatalf("%d name verdicts for %d names", len(v.Names), len(c.img.Names))
			}
			for i, want := range c.names {
				if v.Names[i].Outcome != want {
					t.Errorf("name %s: %s, want %s (%s)", c.img.Names[i], v.Names[i].Outcome, want, v.Names[i].Decision.Reason)
				}
			}
			if c.vouched != "" && v.VouchedBy != c.vouched {
				t.Errorf("vouched by %q, want %q", v.VouchedBy, c.vouched)
			}
			if (v.Outcome == Undecided) != (v.Err != nil) {
				t.Errorf("outcome %s with error %v", v.Outcome, v.Err)
			}
			switch err := v.AsError(); v.Outcome {
			case Allowed:
				if err != nil {
					t.Errorf("AsError = %v for an allowed image", err)
				}
			case Denied:
				var de *DeniedError
				if !errors.As(err, &de) || errors.Is(err, ErrUndecided) {
					t.Errorf("AsError = %v, want a denial", err)
				}
			case Undecided:
				if !errors.Is(err, ErrUndecided) || c.ev.fail != nil && !errors.Is(err, down) {
					t.Errorf("AsError = %v, want undecided wrapping %v", err, down)
				}
			}
		})
	}
}

// TestJudgeSignatures: a signature is asked for only where a signed-by
// rule matches a name, and an unanswered one leaves the image undecided.
func TestJudgeSignatures(t *testing.T) {
	p := loadFixture(t, "signed.yaml")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	const signed = "registry.example.com/approved/app:1"
	img := Image{Names: []string{signed}, Digest: vA, Pulling: true}
	cases := map[string]struct {
		img     Image
		sig     SignatureStatus
		outcome Outcome
		asked   []string
	}{
		"verified":             {img, SignatureVerified, Allowed, []string{"signature " + signed + "@" + vA}},
		"missing":              {img, SignatureMissing, Denied, []string{"signature " + signed + "@" + vA}},
		"registry unreachable": {img, SignatureUnverifiable, Undecided, []string{"signature " + signed + "@" + vA}},
		"a signed digest name of a store that proves nothing does not vouch": {Image{Names: []string{signed, "registry.example.com/approved/app@" + vA}, Digest: vA},
			SignatureVerified, Denied, []string{"signature " + signed + "@" + vA, "serves registry.example.com/approved/app"}},
		"no signed-by rule names it": {Image{Names: []string{"quay.io/x/y:1"}, Digest: vA}, SignatureUnverifiable, Denied, nil},
		"a deny rule settles it first": {Image{Names: []string{"registry.example.com/approved/app:latest"}, Digest: vA},
			SignatureUnverifiable, Denied, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ev := askedEvidence{sig: c.sig}
			v := p.Judge(c.img, now, &ev)
			if v.Outcome != c.outcome {
				t.Errorf("outcome %s, want %s (%s)", v.Outcome, c.outcome, v.Decision.Reason)
			}
			if !slices.Equal(ev.asked, c.asked) {
				t.Errorf("asked %q, want %q", ev.asked, c.asked)
			}
		})
	}
	// Without evidence at all, a signed-by rule denies (fail closed): no
	// verifier is a configuration, not an outage.
	if v := p.Judge(img, now, nil); v.Outcome != Denied {
		t.Errorf("without evidence: %s, want denied", v.Outcome)
	}
}
