package policy

import (
	"strings"
	"testing"
)

// A name whose removal depends on what it stands for is checked again
// before it goes; one denied whatever it names is not.
func TestContentMatters(t *testing.T) {
	p := parsePolicy(t, `mode: enforce
default: deny
local-images: allow
allow:
  - image: reg.example/approved/**
deny:
  - image: reg.example/approved/app
    digests: ["sha256:`+strings.Repeat("c", 64)+`"]
`)
	for name, want := range map[string]bool{
		"reg.example/evil/miner:1":   false, // denied whatever it names
		"reg.example/approved/app:1": true,  // goes only for its content
	} {
		if got := p.ContentMatters(name, testNow); got != want {
			t.Errorf("ContentMatters(%s) = %v, want %v", name, got, want)
		}
		if _, denied := p.DeniedWhateverContent(name, testNow); denied && p.ContentMatters(name, testNow) {
			t.Errorf("%s: denied whatever its content, yet its content matters", name)
		}
	}
	if !loadFixture(t, "signed.yaml").ContentMatters("registry.example.com/approved/app:1", testNow) {
		t.Error("a name a signed-by rule matches: other content may be signed")
	}
	pinned := parsePolicy(t, `mode: enforce
default: deny
local-images: allow
allow:
  - image: reg.example/pinned/app
    digests: ["sha256:`+strings.Repeat("a", 64)+`"]
`)
	if !pinned.ContentMatters("reg.example/evil/miner:1", testNow) {
		t.Error("under a policy that pins digests, content may allow any name")
	}
}
