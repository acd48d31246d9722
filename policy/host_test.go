package policy

import (
	"strings"
	"testing"
)

// hostSpellings are the references of issue 10's table, each naming a
// registry that the rules below name in another spelling, with the
// canonical reference a decision must show.
var hostSpellings = []struct{ input, canonical string }{
	{"ghcr.io:443/bad/x:1", "ghcr.io/bad/x:1"},
	{"a.untrusted.example:443/x:1", "a.untrusted.example/x:1"},
	{"GHCR.IO/bad/x:1", "ghcr.io/bad/x:1"},
	{"A.Untrusted.Example/x:1", "a.untrusted.example/x:1"},
	{"registry-1.docker.io/library/evil:1", "docker.io/library/evil:1"},
	{"Ghcr.Io:443/bad/x:1", "ghcr.io/bad/x:1"},
	{"registry-1.docker.io/evil:1", "docker.io/library/evil:1"},
	{"REGISTRY-1.DOCKER.IO:443/evil:1", "docker.io/library/evil:1"},
	{"INDEX.DOCKER.IO/evil:1", "docker.io/library/evil:1"},
	{"index.docker.io:443/library/evil-2:1", "docker.io/library/evil-2:1"},
	{"DOCKER.IO/library/evil:1", "docker.io/library/evil:1"},
	{"docker.io:443/evil@sha256:" + strings.Repeat("a", 64), "docker.io/library/evil@sha256:" + strings.Repeat("a", 64)},
	// A port is a number: dockerd and containerd dial 034505 as 34505, and
	// 0443 as 443, the default.
	{"127.0.0.1:034505/evil/miner:1.0", "127.0.0.1:34505/evil/miner:1.0"},
	{"127.0.0.1:0000034505/evil/miner:1.0", "127.0.0.1:34505/evil/miner:1.0"},
	{"ghcr.io:0443/bad/x:1", "ghcr.io/bad/x:1"},
	{"GHCR.io:000443/bad/x:1", "ghcr.io/bad/x:1"},
	{"a.untrusted.example:00443/x:1", "a.untrusted.example/x:1"},
	{"registry-1.docker.io:0443/evil:1", "docker.io/library/evil:1"},
	{"[::1]:05000/evil/miner:1", "[::1]:5000/evil/miner:1"},
}

// The rules name the registries in every spelling a writer might use:
// canonical, upper case, with :443, and Docker Hub's API host.
const spellingRules = `
  - image: ghcr.io/bad/**
  - image: "*.untrusted.example/**"
  - image: docker.io/library/evil*
  - image: 127.0.0.1:34505/evil/**
  - image: "[::1]:5000/evil/**"
`

const spellingRulesOtherwise = `
  - image: GHCR.IO:443/bad/**
  - image: "*.Untrusted.EXAMPLE:0443/**"
  - image: registry-1.docker.io/evil*
  - image: 127.0.0.1:034505/evil/**
  - image: "[::1]:005000/evil/**"
`

func TestHostSpellingsDenylist(t *testing.T) {
	for _, rules := range []string{spellingRules, spellingRulesOtherwise} {
		p, err := Parse(Source{Name: "deny.yaml", Data: []byte("default: allow\ndeny:" + rules)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range hostSpellings {
			d := p.Decide(tc.input, testNow)
			if d.Allowed {
				t.Errorf("default allow, rules%s: %s allowed (%s)", rules, tc.input, d.Reason)
			}
			if d.Reference != tc.canonical {
				t.Errorf("%s: reference %q, want %q", tc.input, d.Reference, tc.canonical)
			}
		}
		for _, ok := range []string{"ghcr.io/good/x:1", "untrusted.example/x:1", "docker.io/library/nginx:1",
			"127.0.0.1:3450/evil/miner:1", "127.0.0.1:34506/evil/miner:1", "[::1]:50000/evil/miner:1"} {
			if d := p.Decide(ok, testNow); !d.Allowed {
				t.Errorf("%s denied: %s", ok, d.Reason)
			}
		}
	}
}

func TestHostSpellingsAllowlist(t *testing.T) {
	for _, rules := range []string{spellingRules, spellingRulesOtherwise} {
		p, err := Parse(Source{Name: "allow.yaml", Data: []byte("default: deny\nallow:" + rules)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range hostSpellings {
			d := p.Decide(tc.input, testNow)
			if !d.Allowed {
				t.Errorf("default deny, rules%s: %s denied (%s)", rules, tc.input, d.Reason)
			}
			if d.Reference != tc.canonical {
				t.Errorf("%s: reference %q, want %q", tc.input, d.Reference, tc.canonical)
			}
		}
	}
}

// TestHostSpellingsNoGuesses: only the spellings above are one registry.
// Another port, an address or a trailing dot stays what it says.
func TestHostSpellingsNoGuesses(t *testing.T) {
	p, err := Parse(Source{Name: "allow.yaml", Data: []byte("allow:" + spellingRules)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ input, reference, reason string }{
		{"ghcr.io:80/bad/x:1", "ghcr.io:80/bad/x:1", "no allow rule matches"},
		{"ghcr.io:4430/bad/x:1", "ghcr.io:4430/bad/x:1", "no allow rule matches"},
		{"140.82.113.33/bad/x:1", "140.82.113.33/bad/x:1", "no allow rule matches"},
		{"ghcr.io./bad/x:1", "", "invalid reference"},
		{"hub.docker.com/library/evil:1", "hub.docker.com/library/evil:1", "no allow rule matches"},
	} {
		d := p.Decide(tc.input, testNow)
		if d.Allowed || d.Reference != tc.reference || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s: allowed=%v reference=%q reason=%q; want denied, %q, %q", tc.input, d.Allowed, d.Reference, d.Reason, tc.reference, tc.reason)
		}
	}
}

// A deny rule's host glob written for one of Docker Hub's other names still
// catches the reference once it is spelled docker.io.
func TestHostGlobDenyCoversHubAliases(t *testing.T) {
	p, err := Parse(Source{Name: "deny.yaml", Data: []byte("default: allow\ndeny:\n  - image: \"*.docker.io/**\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"registry-1.docker.io/x/y:1", "index.docker.io/x/y:1", "docker.io/x/y:1", "x/y:1"} {
		if d := p.Decide(in, testNow); d.Allowed {
			t.Errorf("%s allowed under a deny of *.docker.io/**", in)
		}
	}
	if d := p.Decide("quay.io/x/y:1", testNow); !d.Allowed {
		t.Errorf("quay.io denied: %s", d.Reason)
	}
}

// A deny rule's host glob written for Docker Hub's API host, with a name
// below it, catches what Docker pulls for that name: its official image.
func TestHostGlobDenyHubName(t *testing.T) {
	p, err := Parse(Source{Name: "deny.yaml", Data: []byte("default: allow\ndeny:\n  - image: \"*.docker.io/miner\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"registry-1.docker.io/miner:1", "index.docker.io/library/miner:1", "miner:1"} {
		if d := p.Decide(in, testNow); d.Allowed {
			t.Errorf("%s allowed under a deny of *.docker.io/miner", in)
		}
	}
	for _, in := range []string{"acme/miner:1", "quay.io/miner:1", "a.quay.io/miner:1"} {
		if d := p.Decide(in, testNow); !d.Allowed {
			t.Errorf("%s denied: %s", in, d.Reason)
		}
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"ghcr.io": "ghcr.io", "GHCR.IO:443": "ghcr.io", "ghcr.io:4430": "ghcr.io:4430", "localhost:443": "localhost",
		"[::1]:443": "[::1]", "[::ABCD]:5000": "[::abcd]:5000", "registry-1.docker.io": "docker.io",
		"Index.Docker.IO:443": "docker.io", "docker.io:80": "docker.io:80",
		"ghcr.io:0443": "ghcr.io", "127.0.0.1:034505": "127.0.0.1:34505", "localhost:05000": "localhost:5000",
		"[::1]:00080": "[::1]:80", "GHCR.IO:00000000000000000000443": "ghcr.io", "x.io:65535": "x.io:65535",
		"x.io:1": "x.io:1", "x.io:01": "x.io:1", "index.docker.io:0443": "docker.io",
	} {
		if got, err := canonicalHost(in); got != want || err != nil {
			t.Errorf("canonicalHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"ghcr.io:0": "port 0", "ghcr.io:0000": "port 0", "ghcr.io:65536": "port 65536",
		"127.0.0.1:99999999999999999999": "port 99999999999999999999", "[::1]:070000": "port 70000",
	} {
		if got, err := canonicalHost(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("canonicalHost(%q) = %q, %v; want an error about %s", in, got, err, want)
		}
	}
}

// A reference on a port no runtime can pull from is denied as invalid,
// saying why; it is not judged as some other registry.
func TestReferencePortRefused(t *testing.T) {
	p, err := Parse(Source{Name: "allow.yaml", Data: []byte("default: allow\n")})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"ghcr.io:65536/x:1":                                "invalid reference: registry port 65536 is out of range 1-65535: no runtime can pull from it",
		"127.0.0.1:0/evil/miner:1":                         "invalid reference: registry port 0 is out of range 1-65535: no runtime can pull from it",
		"localhost:000/x":                                  "invalid reference: registry port 0 is out of range 1-65535: no runtime can pull from it",
		"[::1]:123456/x@sha256:" + strings.Repeat("a", 64): "invalid reference: registry port 123456 is out of range 1-65535: no runtime can pull from it",
	} {
		d := p.Decide(in, testNow)
		if d.Allowed || d.Reference != "" || d.Reason != want {
			t.Errorf("%s: allowed=%v reference=%q %q; want denied, %q", in, d.Allowed, d.Reference, d.Reason, want)
		}
	}
}

// Drop-ins meet in one index: a team's deny rule spelled with :443 and upper
// case holds against the base file's allow rule spelled canonically.
func TestHostSpellingsAcrossDropIns(t *testing.T) {
	p, err := Parse(
		Source{Name: "policy.yaml", Data: []byte("allow:\n  - image: ghcr.io/team-a/**\n")},
		Source{Name: "policy.d/10-team-a.yaml", Data: []byte("deny:\n  - image: GHCR.IO:443/team-a/secret\n")},
	)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]bool{
		"ghcr.io/team-a/secret:1": false, "ghcr.io:443/team-a/secret:1": false, "GHCR.io/team-a/secret:1": false,
		"ghcr.io/team-a/app:1": true, "Ghcr.IO:443/team-a/app:1": true,
	} {
		if d := p.Decide(in, testNow); d.Allowed != want {
			t.Errorf("%s: allowed = %v, want %v (%s)", in, d.Allowed, want, d.Reason)
		}
	}
}
