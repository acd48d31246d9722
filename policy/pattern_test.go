package policy

import "testing"

// hubPatterns decides every way a pattern can name Docker Hub. Docker's
// normalization applies where the pattern is a name: "*" or "nginx" alone,
// or one segment under a Hub host, is an official image (library/). A path
// that begins with ** is no name and gets no library/: docker.io/** is all
// of Docker Hub, as hadolint reads a trusted docker.io. Each case is the
// rule as a check shows it, what it matches and what it must not.
var hubPatterns = []struct {
	image, shown string
	matches, not []string
}{
	{"docker.io/**", "docker.io/**",
		[]string{"nginx:1", "library/nginx:1", "zemanlx/ubuntu:18.04", "docker.io/acme/tool:1", "evil/miner:1",
			"registry-1.docker.io/evil/miner:1", "index.docker.io/evil/miner:1", "docker.io/a/b/c:1", "DOCKER.IO:443/a/b:1"},
		[]string{"ghcr.io/acme/tool:1", "docker.io.evil.example/x:1", "localhost:5000/evil/miner:1", "hub.docker.com/x/y:1"}},
	{"index.docker.io/**", "docker.io/**",
		[]string{"nginx:1", "evil/miner:1", "registry-1.docker.io/evil/miner:1", "docker.io/a/b/c:1"},
		[]string{"ghcr.io/acme/tool:1", "quay.io/evil/miner:1"}},
	{"registry-1.docker.io/**", "docker.io/**",
		[]string{"nginx:1", "evil/miner:1", "index.docker.io/evil/miner:1", "docker.io/a/b/c:1"},
		[]string{"ghcr.io/acme/tool:1"}},
	{"REGISTRY-1.DOCKER.IO:443/**", "docker.io/**",
		[]string{"nginx:1", "evil/miner:1"},
		[]string{"ghcr.io/acme/tool:1"}},
	{"docker.io/**/x", "docker.io/**/x",
		[]string{"x:1", "library/x:1", "acme/x:1", "a/b/x:1", "index.docker.io/acme/x:1"},
		[]string{"acme/y:1", "x/y:1", "ghcr.io/acme/x:1"}},
	{"registry-1.docker.io/**/x", "docker.io/**/x",
		[]string{"x:1", "docker.io/library/x:1", "acme/x:1", "registry-1.docker.io/a/b/x:1"},
		[]string{"acme/xx:1", "ghcr.io/x:1"}},
	{"docker.io/*", "docker.io/library/*",
		[]string{"nginx:1", "library/nginx:1", "docker.io/nginx:1", "index.docker.io/nginx:1"},
		[]string{"acme/nginx:1", "library/a/b:1", "ghcr.io/nginx:1"}},
	{"index.docker.io/*", "docker.io/library/*",
		[]string{"nginx:1", "docker.io/library/nginx:1"},
		[]string{"acme/nginx:1", "ghcr.io/nginx:1"}},
	{"docker.io/ngin*", "docker.io/library/ngin*",
		[]string{"nginx:1", "library/nginx-unprivileged:1"},
		[]string{"acme/nginx:1", "redis:1"}},
	{"*", "docker.io/library/*",
		[]string{"nginx:1", "docker.io/library/redis:7", "registry-1.docker.io/nginx:1"},
		[]string{"acme/tool:1", "ghcr.io/nginx:1", "localhost/nginx:1"}},
	{"nginx", "docker.io/library/nginx",
		[]string{"nginx:1", "docker.io/nginx:1", "index.docker.io/library/nginx:1"},
		[]string{"acme/nginx:1", "nginx2:1", "ghcr.io/nginx:1"}},
	{"docker.io/nginx", "docker.io/library/nginx",
		[]string{"nginx:1", "library/nginx:1"},
		[]string{"acme/nginx:1"}},
	{"**/x", "**/x",
		[]string{"x:1", "acme/x:1", "ghcr.io/x:1", "ghcr.io/a/b/x:1", "localhost:5000/x:1"},
		[]string{"x/y:1", "ghcr.io/xx:1", "acme/y:1"}},
	{"**", "**",
		[]string{"nginx:1", "acme/tool:1", "ghcr.io/a/b:1", "localhost:5000/x:1"},
		nil},
	{"docker.io/library/**", "docker.io/library/**",
		[]string{"nginx:1", "library/nginx:1", "docker.io/library/a/b:1"},
		[]string{"acme/nginx:1", "evil/miner:1", "ghcr.io/library/nginx:1"}},
	{"library/*", "docker.io/library/*",
		[]string{"nginx:1"},
		[]string{"acme/nginx:1"}},
	{"docker.io/acme/*", "docker.io/acme/*",
		[]string{"acme/tool:1", "docker.io/acme/tool:1", "index.docker.io/acme/tool:1"},
		[]string{"acme/a/b:1", "acme2/tool:1", "nginx:1", "ghcr.io/acme/tool:1"}},
	{"acme/*", "docker.io/acme/*",
		[]string{"acme/tool:1", "registry-1.docker.io/acme/tool:1"},
		[]string{"acme/a/b:1", "ghcr.io/acme/tool:1"}},
	{"acme/**", "docker.io/acme/**",
		[]string{"acme/tool:1", "acme/a/b:1"},
		[]string{"acme:1", "nginx:1", "ghcr.io/acme/tool:1"}},
	{"*/*", "docker.io/*/*",
		[]string{"nginx:1", "acme/tool:1"},
		[]string{"a/b/c:1", "ghcr.io/a/b:1"}},
	{"docker.io/*/**", "docker.io/*/**",
		[]string{"nginx:1", "acme/tool:1", "a/b/c:1"},
		[]string{"ghcr.io/a/b:1"}},
	// A host glob that reaches Docker Hub reads a one-segment name there as
	// Docker does.
	{"**.docker.io/nginx", "**.docker.io/nginx",
		[]string{"nginx:1", "docker.io/library/nginx:1", "registry-1.docker.io/nginx:1"},
		[]string{"acme/nginx:1", "library/nginx/x:1", "ghcr.io/nginx:1"}},
	{"**.docker.io/*", "**.docker.io/*",
		[]string{"nginx:1", "index.docker.io/redis:1"},
		[]string{"acme/nginx:1"}},
	{"ghcr.io/**", "ghcr.io/**",
		[]string{"ghcr.io/a:1", "ghcr.io/a/b/c:1"},
		[]string{"nginx:1", "a/b:1"}},
}

// Every case holds in an allowlist and, the mirror image, in a denylist: a
// rule that allows an image as an allow rule denies it as a deny rule.
func TestHubPatterns(t *testing.T) {
	for _, tc := range hubPatterns {
		for _, kind := range []RuleKind{Allow, Deny} {
			t.Run(string(kind)+" "+tc.image, func(t *testing.T) {
				text := "default: deny\nallow:\n"
				if kind == Deny {
					text = "default: allow\ndeny:\n"
				}
				p, err := Parse(Source{Name: "p.yaml", Data: []byte(text + "  - image: \"" + tc.image + "\"\n")})
				if err != nil {
					t.Fatal(err)
				}
				rules := p.Allow
				if kind == Deny {
					rules = p.Deny
				}
				if got := rules[0].Pattern; got != tc.shown {
					t.Errorf("rule shown as %q, want %q", got, tc.shown)
				}
				for _, in := range tc.matches {
					d := p.Decide(in, testNow)
					if want := "matches " + string(kind) + " rule " + tc.shown; d.Allowed != (kind == Allow) || d.Reason != want {
						t.Errorf("%s: allowed=%v %q; want allowed=%v %q", in, d.Allowed, d.Reason, kind == Allow, want)
					}
				}
				for _, in := range tc.not {
					d := p.Decide(in, testNow)
					if d.Allowed != (kind == Deny) || d.Rule != nil || d.Reference == "" {
						t.Errorf("%s: allowed=%v %q; want the default, allowed=%v", in, d.Allowed, d.Reason, kind == Deny)
					}
				}
			})
		}
	}
}

// The bypass, as an operator writes it.
func TestDenyAllOfDockerHub(t *testing.T) {
	p, err := Parse(Source{Name: "p.yaml", Data: []byte("default: allow\ndeny:\n  - image: docker.io/**\n")})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"evil/miner:1", "registry-1.docker.io/evil/miner:1", "docker.io/a/b/c:1"} {
		if d := p.Decide(in, testNow); d.Allowed {
			t.Errorf("%s allowed under a deny of docker.io/**: %s", in, d.Reason)
		}
	}
	if d := p.Decide("ghcr.io/evil/miner:1", testNow); !d.Allowed {
		t.Errorf("ghcr.io denied under a deny of docker.io/**: %s", d.Reason)
	}
}

// The rule an operator sees is the one written, spelled canonically, and it
// reads back to the same rule: check's output can be pasted into a policy.
func TestHubPatternShownReadsBack(t *testing.T) {
	for _, tc := range hubPatterns {
		p, err := parsePattern(tc.shown)
		if err != nil {
			t.Errorf("%s: %v", tc.shown, err)
			continue
		}
		if got := p.String(); got != tc.shown {
			t.Errorf("%s reads back as %s", tc.shown, got)
		}
	}
}
