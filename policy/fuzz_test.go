package policy

import (
	"path"
	"strings"
	"testing"
)

// FuzzDecide: no input panics, nothing unparsable is allowed, and what is
// allowed has a normalized reference that parses back to itself.
func FuzzDecide(f *testing.F) {
	p := loadFixture(f, "decide.yaml")
	for _, s := range []string{
		"nginx", "nginx:1.25", "registry.corp.example.com/approved/x:1", "[::1]:5000/ipv6/app:1",
		"registry.corp.example.com.evil.io/approved/x", "sha256:" + strings.Repeat("a", 64),
		"ghcr.io/acme/tool:v3@sha256:" + strings.Repeat("a", 64), "Nginx", "", "a/b/c/d/e:1.0",
		"eu.mirror.example.net/x/y:2", "quay.io/a/stable-base:1",
		"REGISTRY.corp.example.com:443/approved/x:1", "registry-1.docker.io/nginx:1.25", "INDEX.DOCKER.IO/myorg/base:1",
		"127.0.0.1:034505/evil/miner:1.0", "registry.corp.example.com:0443/approved/x:1", "x.io:0/y", "x.io:65536/y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d := p.Decide(in, testNow)
		if d.Input != in {
			t.Fatalf("Input = %q, want %q", d.Input, in)
		}
		if d.Reference == "" {
			if d.Allowed {
				t.Fatalf("unparsable %q allowed", in)
			}
			return
		}
		back, err := ParseRef(d.Reference)
		if err != nil {
			t.Fatalf("normalized %q of %q does not parse: %v", d.Reference, in, err)
		}
		if back.String != d.Reference {
			t.Fatalf("normalizing %q is not stable: %q then %q", in, d.Reference, back.String)
		}
		if again := p.Decide(d.Reference, testNow); again.Allowed != d.Allowed {
			t.Fatalf("%q and its normalized form %q are judged differently", in, d.Reference)
		}
	})
}

// FuzzHostSpellings: a registry has one canonical spelling, so another
// spelling of a reference's host (case, :443, a port's leading zeros,
// Docker Hub's other names) is judged exactly as the reference itself, by
// an allowlist and a denylist alike: no spelling of a denied registry is
// allowed.
func FuzzHostSpellings(f *testing.F) {
	allow, err := Parse(Source{Name: "allow.yaml", Data: []byte("allow:" + spellingRules)})
	if err != nil {
		f.Fatal(err)
	}
	deny, err := Parse(Source{Name: "deny.yaml", Data: []byte("default: allow\ndeny:" + spellingRules)})
	if err != nil {
		f.Fatal(err)
	}
	for i, tc := range hostSpellings {
		f.Add(tc.input, uint8(i), uint8(i%3))
		f.Add(tc.canonical, uint8(i*37), uint8(i))
	}
	f.Add("nginx:1", uint8(3), uint8(0))
	f.Add("localhost:5000/x", uint8(5), uint8(2))
	f.Add("127.0.0.1:34505/evil/miner:1.0", uint8(0), uint8(1))
	f.Add("ghcr.io/bad/x", uint8(16), uint8(1))
	f.Fuzz(func(t *testing.T, in string, variant, zeros uint8) {
		ref, err := ParseRef(in)
		if err != nil || ref.Domain == "" {
			// No host to spell another way: distribution/reference gives
			// a name whose first component has a dot but is no valid host
			// (0.0_0/0) no domain at all, and no registry serves it.
			return
		}
		spelled := respell(ref, variant, zeros)
		for _, p := range []*Policy{allow, deny} {
			want, got := p.Decide(ref.String, testNow), p.Decide(spelled, testNow)
			if got.Allowed != want.Allowed || got.Reference != want.Reference {
				t.Fatalf("%s judged allowed=%v as %q, its spelling %s allowed=%v as %q",
					ref.String, want.Allowed, want.Reference, spelled, got.Allowed, got.Reference)
			}
		}
	})
}

// respell writes a reference's host in another spelling of the same
// registry: the bits of variant choose upper case letters, :443 and, on
// Docker Hub, which of its names; zeros is how many zeros (up to 7) lead
// the port.
func respell(ref Ref, variant, zeros uint8) string {
	host := ref.Domain
	if host == "docker.io" {
		host = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}[int(variant>>5)%3]
	}
	b := []byte(host)
	for i := range b {
		if variant&(1<<(i%4)) != 0 && b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	host = string(b)
	if variant&16 != 0 && !strings.Contains(host, ":") && !strings.HasSuffix(host, "]") {
		host += ":443"
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i+1] + strings.Repeat("0", int(zeros%8)) + host[i+1:]
	}
	return host + ref.String[len(ref.Domain):]
}

// FuzzParse: no policy text panics the loader, and a policy that loads
// decides without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"mode: enforce\nallow:\n  - image: nginx\n",
		"allow:\n  - image: \"**\"\n    tags: [\"1.*\"]\ndeny:\n  - image: \"*.x.io/**/y\"\n",
		"mode: [\nx",
		"allow:\n  - image: a\n    digests: [\"sha256:" + strings.Repeat("b", 64) + "\"]\n    expires: 2027-01-01\n",
		"default: allow\nrunning: stop\n",
		"allow: &a\n  - image: x\ndeny: *a\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(Source{Name: "fuzz.yaml", Data: []byte(text)})
		if err != nil {
			if p != nil {
				t.Fatal("a policy came back with an error")
			}
			return
		}
		for _, ref := range []string{"nginx", "a/b:c", "x.io/y/z@sha256:" + strings.Repeat("c", 64), "Bad"} {
			d := p.Decide(ref, testNow)
			if ref == "Bad" && d.Allowed {
				t.Fatal("an unparsable reference was allowed")
			}
		}
	})
}

// FuzzFastParse: the fast path gives exactly distribution/reference's
// answer for every input it accepts.
func FuzzFastParse(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.25", "docker.io/nginx", "library/nginx:1", "myorg/base:2", "localhost:5000/x/y:z",
		"registry.corp.example.com/a/b__c.d--e:1.0-RC_1", "ghcr.io/acme/tool:v3@sha256:" + strings.Repeat("a", 64),
		"a-.b", "a.-b", "a___b", "a--b", "x.io:443/y", "X.io/y", "-a.io/b", "a-.io/b", "a.io:/b", "a.io:5x/b",
		"localhost:5000", "nginx@sha256:" + strings.Repeat("A", 64), "a/b:" + strings.Repeat("t", 129), "a//b", "a/b/",
		"a.io:0443/b", "a.io:05000/b", "a.io:0/b", "a.io:65535/b", "a.io:65536/b", "a.io:99999/b", "localhost:00/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		fast, ok := fastParse(in)
		if !ok {
			return
		}
		slow, err := parseRefWithLibrary(in)
		if err != nil {
			t.Fatalf("fast path accepted %q, the library refuses it: %v", in, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast path %+v, library %+v", in, fast, slow)
		}
	})
}

// FuzzTagMatches: the shortcuts of tagMatches give path.Match's answer
// for every valid tag.
func FuzzTagMatches(f *testing.F) {
	for _, p := range [][2]string{{"latest", "latest"}, {"latest", "1.2"}, {"1.*", "1.2"}, {"*-debug", "1-debug"}, {"[a-c]*", "b1"}, {"\\x", "x"}, {"?", "x"}, {"[", "["}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, glob, tag string) {
		if !isTag(tag) {
			return
		}
		want, _ := path.Match(glob, tag)
		if got := tagMatches(glob, tag); got != want {
			t.Fatalf("tagMatches(%q, %q) = %v, path.Match says %v", glob, tag, got, want)
		}
	})
}
