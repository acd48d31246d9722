package policy

import (
	"testing"
	"time"
)

func TestGlobWitness(t *testing.T) {
	tests := []struct {
		glob string
		want string
		ok   bool
	}{
		{"latest", "latest", true},
		{"1.*", "1.", true},
		{"v?", "va", true},
		{"debug-[0-9]*", "debug-0", true},
		{"[^a-z]x", "Ax", true},
		{"[!]x", "!x", false}, // ! is no negation in path.Match; no tag holds "!"
		{"[a-c][x-z]", "ax", true},
	}
	for _, tc := range tests {
		t.Run(tc.glob, func(t *testing.T) {
			got, ok := globWitness(tc.glob)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("globWitness(%q) = %q, %v; want %q, %v", tc.glob, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestDecideAllTags: a pull of every tag is allowed only when no tag of the
// repository could be denied.
func TestDecideAllTags(t *testing.T) {
	p := parsePolicy(t, `allow: [{image: reg.example/open/**}, {image: reg.example/some/app, tags: ["1.*"]}]
deny: [{image: "**", tags: [latest]}, {image: reg.example/open/locked, tags: ["debug-[0-9]*"]}]
`)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for name, want := range map[string]bool{
		"reg.example/open/app":    false, // latest is denied everywhere
		"reg.example/some/app":    false, // only some tags are allowed
		"reg.example/open/locked": false,
		"quay.io/x/y":             false,
		"not a reference":         false,
	} {
		if d := p.DecideAllTags(name, now); d.Allowed != want {
			t.Errorf("%s: allowed %v (%s), want %v", name, d.Allowed, d.Reason, want)
		}
	}
	open := parsePolicy(t, "allow: [{image: reg.example/open/**}]\ndeny: [{image: reg.example/open/locked, tags: [\"debug-[0-9]*\"]}]\n")
	for name, want := range map[string]bool{"reg.example/open/app": true, "reg.example/open/locked": false} {
		if d := open.DecideAllTags(name, now); d.Allowed != want {
			t.Errorf("%s: allowed %v (%s), want %v", name, d.Allowed, d.Reason, want)
		}
	}
}
