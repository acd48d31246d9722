package policy

import (
	"fmt"
	"strings"
)

// canonicalHost is the one spelling of a registry host that the policy
// compares: lower case (host names are case-insensitive, and the reference
// grammar accepts upper case in them), its port as a number without leading
// zeros and without the default HTTPS port 443, and with Docker Hub's other
// names (index.docker.io, registry-1.docker.io, the API host) as docker.io.
// Each of these reaches the same endpoint, so a rule written for one
// spelling holds for all of them: dockerd and containerd dial
// 127.0.0.1:034505 on port 34505 and ghcr.io:0443 on 443 (Go reads a port
// as a decimal number).
//
// A port no runtime can pull from (0, or above 65535) is an error. Nothing
// is guessed beyond that: :80 may be another service, an IP address or
// another name for a host cannot be recognized from the reference, and a
// trailing dot is refused by the grammar before this is reached.
func canonicalHost(h string) (string, error) {
	if hasUpper(h) {
		h = strings.ToLower(h)
	}
	if host, port, ok := splitPort(h); ok && !isCanonicalPort(port) {
		n := strings.TrimLeft(port, "0")
		if n == "" || len(n) > 5 || n > "65535" && len(n) == 5 {
			if n == "" {
				n = "0"
			}
			return "", fmt.Errorf("registry port %s is out of range 1-65535: no runtime can pull from it", n)
		}
		h = host + ":" + n
	}
	h = strings.TrimSuffix(h, ":443")
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io", nil
	}
	return h, nil
}

// splitPort splits host:port; an IPv6 address's colons are inside [].
func splitPort(h string) (host, port string, ok bool) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[i:], ']') >= 0 {
		return h, "", false
	}
	return h[:i], h[i+1:], true
}

// isCanonicalPort: the decimal digits of a number from 1 to 65535, with no
// leading zero. The reference grammar has already allowed digits only.
func isCanonicalPort(p string) bool {
	return p != "" && p[0] != '0' && allDigits(p) && (len(p) < 5 || len(p) == 5 && p <= "65535")
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
