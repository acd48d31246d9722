// Package policygen writes policies shaped like a fleet's, for the
// benchmarks of the policy core and of the commands that load it.
package policygen

import (
	"fmt"
	"strings"
)

// Hosts are the registries a generated policy names, in rotation.
var Hosts = []string{"registry.corp.example.com", "ghcr.io", "quay.io", "docker.io", "eu.mirror.example.net:5000"}

// Fleet is a policy of n rules: mostly literal repositories spread over
// Hosts (rule i is on Hosts[i%5]: team<i/10>/app<i> for i%10 >= 2), some
// namespace globs (i%10 == 0: team<i>/**), tag-constrained globs (i%10 ==
// 1: team<i>/svc-*), and two deny rules.
func Fleet(n int) string {
	var b strings.Builder
	b.WriteString("mode: enforce\nallow:\n")
	for i := 0; i < n-2; i++ {
		h := Hosts[i%len(Hosts)]
		switch i % 10 {
		case 0:
			fmt.Fprintf(&b, "  - image: %s/team%d/**\n", h, i)
		case 1:
			fmt.Fprintf(&b, "  - image: %s/team%d/svc-*\n    tags: [\"1.*\", \"2.*\"]\n", h, i)
		default:
			fmt.Fprintf(&b, "  - image: %s/team%d/app%d\n", h, i/10, i)
		}
	}
	b.WriteString("deny:\n  - image: \"**\"\n    tags: [latest]\n  - image: ghcr.io/team3/**\n    tags: [\"*-debug\"]\n")
	return b.String()
}

// Organization is a large organization's allowlist: every approved
// repository listed, n rules of about 80 bytes (100,000 rules make 8 MB),
// spread over Hosts, most with a tag constraint, some with a reason.
func Organization(n int) string {
	var b strings.Builder
	b.Grow(n * 84)
	b.WriteString("mode: enforce\ndefault: deny\nallow:\n")
	for i := 0; i < n; i++ {
		h := Hosts[i%len(Hosts)]
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - image: %s/team%d/service-%d\n    tags: [\"1.*\", \"2.*\"]\n", h, i/50, i)
		case 1:
			fmt.Fprintf(&b, "  - image: %s/team%d/service-%d\n    reason: PLAT-%d, approved by platform security\n    expires: 2030-01-31\n", h, i/50, i, i)
		case 2:
			fmt.Fprintf(&b, "  - image: %s/team%d/service-%d\n    tags: [\"v*\", \"stable\"]\n", h, i/50, i)
		default:
			fmt.Fprintf(&b, "  - image: %s/team%d/service-%d/**\n", h, i/50, i)
		}
	}
	b.WriteString("deny:\n  - image: \"**\"\n    tags: [latest]\n")
	return b.String()
}
