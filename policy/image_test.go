package policy

import (
	"strings"
	"testing"
	"time"
)

// The one table for "may this image stay and run?": every path that asks
// (Docker and containerd guards, authorization plugin, verifier, scan)
// calls DecideImage, so its semantics are pinned here once.
func TestDecideImage(t *testing.T) {
	const (
		dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		id = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	)
	// Names alone: provenance (local-images: deny) has its own table.
	src := `mode: enforce
default: deny
local-images: allow
allow:
  - image: reg.example/approved/**
  - image: reg.example/tagged/app
    tags: ["1.*"]
  - image: reg.example/pinned/app
    digests: ["` + dA + `"]
  - image: reg.example/old/app
    expires: 2026-01-01
deny:
  - image: "**"
    digests: ["` + dB + `"]
`
	p, err := Parse(Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	allowAll, err := Parse(Source{Name: "open.yaml", Data: []byte("default: allow\nlocal-images: allow\n")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		p       *Policy
		names   []string
		digest  string
		allowed bool
		denied  []string // names to remove
		reason  string   // part of the deciding reason
	}{
		{"an allowed tag", p, []string{"reg.example/approved/x:1"}, "", true, nil, "allow rule"},
		{"a denied tag", p, []string{"reg.example/evil/x:1"}, "", false, []string{"reg.example/evil/x:1"}, "no allow rule"},
		{"one allowed name is enough to stay; the denied one goes", p,
			[]string{"reg.example/evil/x:1", "reg.example/approved/x:1"}, "", true, []string{"reg.example/evil/x:1"}, "allow rule"},
		{"a tag is judged with the content digest: a deny rule listing it wins", p,
			[]string{"reg.example/approved/x:1"}, dB, false, []string{"reg.example/approved/x:1"}, "deny rule"},
		{"a tag is judged with its repository's digest names (Docker)", p,
			[]string{"reg.example/approved/x:1", "reg.example/approved/x@" + dB}, "", false,
			[]string{"reg.example/approved/x:1", "reg.example/approved/x@" + dB}, "deny rule"},
		{"a digest pin allows the tag pulled as that digest", p,
			[]string{"reg.example/pinned/app:2"}, dA, true, nil, "allow rule"},
		{"the pin does not allow the tag alone", p, []string{"reg.example/pinned/app:2"}, "", false,
			[]string{"reg.example/pinned/app:2"}, "no allow rule"},
		{"a digest record follows an allowed tag of its repository (CRI)", p,
			[]string{"reg.example/tagged/app:1.2", "reg.example/tagged/app@" + dA}, dA, true, nil, "allow rule"},
		{"a digest record of a denied tag goes with it", p,
			[]string{"reg.example/tagged/app:2.0", "reg.example/tagged/app@" + dA}, dA, false,
			[]string{"reg.example/tagged/app:2.0", "reg.example/tagged/app@" + dA}, "no allow rule"},
		{"a name pinning other content than the image's is denied", p,
			[]string{"reg.example/approved/x@" + dA}, dB, false, []string{"reg.example/approved/x@" + dA}, "pins"},
		{"an image ID is not a name and is never listed for removal", p,
			[]string{id, "reg.example/evil/x:1"}, dA, false, []string{"reg.example/evil/x:1"}, "no allow rule"},
		{"only image IDs: the default decides (deny)", p, []string{id}, dA, false, nil, "no name to judge"},
		{"no names: the default decides (deny)", p, nil, "", false, nil, "no name to judge"},
		{"no names: the default decides (allow)", allowAll, nil, "", true, nil, "default is allow"},
		{"an expired exception allows nothing", p, []string{"reg.example/old/app:1"}, "", false,
			[]string{"reg.example/old/app:1"}, "expired"},
		{"an unparsable name is denied", p, []string{"Bad Ref"}, "", false, []string{"Bad Ref"}, "invalid reference"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.p.DecideImage(c.names, c.digest, now)
			if d.Allowed != c.allowed {
				t.Errorf("allowed %v, want %v (%s)", d.Allowed, c.allowed, d.Decision.Reason)
			}
			if d.Decision.Allowed != c.allowed {
				t.Errorf("the explaining decision says allowed=%v", d.Decision.Allowed)
			}
			if !strings.Contains(d.Decision.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", d.Decision.Reason, c.reason)
			}
			var denied []string
			for _, n := range d.Denied() {
				denied = append(denied, n.Name)
			}
			if strings.Join(denied, " ") != strings.Join(c.denied, " ") {
				t.Errorf("denied %q, want %q", denied, c.denied)
			}
			if d.PolicyHash != c.p.Hash || d.Decision.PolicyHash != c.p.Hash {
				t.Errorf("policy hash %q / %q, want %q", d.PolicyHash, d.Decision.PolicyHash, c.p.Hash)
			}
		})
	}
}

// TestDeniedWhateverContent: the names a guard may remove without looking
// at their image, because no content and no other name could keep them.
func TestDeniedWhateverContent(t *testing.T) {
	const src = `mode: enforce
default: deny
local-images: allow
allow:
  - image: reg.example/approved/**
  - image: reg.example/tagged/app
    tags: ["1.*"]
deny:
  - image: reg.example/approved/legacy
    tags: [latest]
`
	p, err := Parse(Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("b", 64)
	for name, want := range map[string]bool{
		"reg.example/evil/miner:latest":         true,
		"reg.example/evil/miner@" + digest:      true,
		"reg.example/tagged/app:2":              true,
		"reg.example/tagged/app:1.0":            false, // allowed
		"reg.example/approved/app:1":            false, // allowed
		"reg.example/approved/legacy:latest":    false, // its digest references are allowed
		"reg.example/approved/legacy@" + digest: false, // allowed
		"not a reference!":                      false, // planned over the image, as any name
		digest:                                  false, // an image ID is no name
	} {
		if _, got := p.DeniedWhateverContent(name, testNow); got != want {
			t.Errorf("DeniedWhateverContent(%s) = %v, want %v", name, got, want)
		}
	}
	// With a digest pinned anywhere, content may allow what the name does not.
	pinned, err := Parse(Source{Name: "pinned.yaml", Data: []byte(strings.Replace(src, "deny:\n", "  - image: reg.example/other/app\n    digests: [\""+digest+"\"]\ndeny:\n", 1))})
	if err != nil {
		t.Fatal(err)
	}
	if !pinned.pinsDigests || p.pinsDigests {
		t.Errorf("pinsDigests = %v with a pinned allow rule, %v without", pinned.pinsDigests, p.pinsDigests)
	}
	if _, got := pinned.DeniedWhateverContent("reg.example/evil/miner:latest", testNow); got {
		t.Error("denied whatever its content under a policy that pins digests")
	}
}
