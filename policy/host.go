package policy

import "strings"

// canonicalHost is the one spelling of a registry host that the policy
// compares: lower case (host names are case-insensitive, and the reference
// grammar accepts upper case in them), without the default HTTPS port :443,
// and with Docker Hub's other names (index.docker.io, registry-1.docker.io,
// the API host) as docker.io. Each of these reaches the same endpoint, so a
// rule written for one spelling holds for all of them.
//
// Nothing is guessed beyond that: :80 may be another service, an IP address
// or another name for a host cannot be recognized from the reference, and a
// trailing dot is refused by the grammar before this is reached.
func canonicalHost(h string) string {
	if hasUpper(h) {
		h = strings.ToLower(h)
	}
	h = strings.TrimSuffix(h, ":443")
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// dockerHubAliases are the other spellings of docker.io, tried against host
// globs in deny rules: "*.docker.io/**" meant registry-1.docker.io too
// before it became docker.io.
var dockerHubAliases = []string{"index.docker.io", "registry-1.docker.io"}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}
