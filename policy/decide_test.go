package policy

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// testNow is the moment the fixture is judged at: after the legacy
// exception expired, before the temporary one does.
var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func loadFixture(t testing.TB, name string) *Policy {
	t.Helper()
	p, err := LoadFiles([]string{"testdata/" + name}, LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatalf("loading fixture: %v", err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := loadFixture(t, "decide.yaml")
	cases := []struct {
		name      string
		input     string
		allowed   bool
		reference string // normalized; "" when the input must not parse
		ruleLine  int    // 0: the default decided
		reason    string // a part of the reason
		resembles string
	}{
		{"hub shorthand official tag allowed", "nginx:1.25", true, "docker.io/library/nginx:1.25", 6, "allow rule docker.io/library/*", ""},
		{"hub shorthand stable tag", "redis:stable", true, "docker.io/library/redis:stable", 6, "", ""},
		{"hub shorthand no tag means latest", "nginx", false, "docker.io/library/nginx:latest", 26, "deny rule **", ""},
		{"hub explicit latest denied", "nginx:latest", false, "docker.io/library/nginx:latest", 26, "", ""},
		{"hub tag outside globs", "nginx:2.0", false, "docker.io/library/nginx:2.0", 0, "no allow rule matches", ""},
		{"hub library prefix", "library/nginx:1.2", true, "docker.io/library/nginx:1.2", 6, "", ""},
		{"hub docker.io prefix", "docker.io/nginx:1.2", true, "docker.io/library/nginx:1.2", 6, "", ""},
		{"hub docker.io library prefix", "docker.io/library/nginx:1.2", true, "docker.io/library/nginx:1.2", 6, "", ""},
		{"hub index.docker.io", "index.docker.io/nginx:1.2", true, "docker.io/library/nginx:1.2", 6, "", ""},
		{"hub index.docker.io library", "index.docker.io/library/nginx:1.2", true, "docker.io/library/nginx:1.2", 6, "", ""},
		{"hub user repo not official", "someone/nginx:1.2", false, "docker.io/someone/nginx:1.2", 0, "", ""},
		{"hub user repo via docker.io", "docker.io/someone/nginx:1.2", false, "docker.io/someone/nginx:1.2", 0, "", ""},
		{"hub nested path not official", "library/a/b:1.0", false, "docker.io/library/a/b:1.0", 0, "", ""},
		{"hub official digest only", "nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, "docker.io/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, "no allow rule", ""},
		{"hub official tag and digest", "nginx:1.25@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true, "docker.io/library/nginx:1.25@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 6, "", ""},
		{"hub latest with digest still denied", "nginx:latest@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, "docker.io/library/nginx:latest@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 26, "", ""},
		{"bitnami via index alias", "bitnami/redis:7.2", true, "docker.io/bitnami/redis:7.2", 23, "", ""},
		{"bitnami wrong tag", "bitnami/redis:6.0", false, "docker.io/bitnami/redis:6.0", 0, "", ""},
		{"corp approved", "registry.corp.example.com/approved/app:1.0", true, "registry.corp.example.com/approved/app:1.0", 5, "", ""},
		{"corp approved deep", "registry.corp.example.com/approved/team/a/b:2", true, "registry.corp.example.com/approved/team/a/b:2", 5, "", ""},
		{"corp approved latest denied", "registry.corp.example.com/approved/app", false, "registry.corp.example.com/approved/app:latest", 26, "", ""},
		{"corp approved experimental denied", "registry.corp.example.com/approved/experimental/x:1", false, "registry.corp.example.com/approved/experimental/x:1", 28, "deny rule registry.corp.example.com/approved/experimental/**", ""},
		{"corp approved experimental deep denied", "registry.corp.example.com/approved/experimental/a/b:1", false, "registry.corp.example.com/approved/experimental/a/b:1", 28, "", ""},
		{"corp approved name experimental-ish allowed", "registry.corp.example.com/approved/experimentalx:1", true, "registry.corp.example.com/approved/experimentalx:1", 5, "", ""},
		{"corp suffix host trick", "registry.corp.example.com.evil.io/approved/x:1", false, "registry.corp.example.com.evil.io/approved/x:1", 0, "", ""},
		{"corp prefix host trick", "evilregistry.corp.example.com/approved/x:1", false, "evilregistry.corp.example.com/approved/x:1", 0, "", ""},
		{"corp path prefix trick", "registry.corp.example.com/approvedx:1", false, "registry.corp.example.com/approvedx:1", 0, "", "registry.corp.example.com/approved/**"},
		{"corp path prefix trick nested", "registry.corp.example.com/approvedx/y:1", false, "registry.corp.example.com/approvedx/y:1", 0, "", "registry.corp.example.com/approved/**"},
		{"corp repo itself is not below it", "registry.corp.example.com/approved:1", false, "registry.corp.example.com/approved:1", 0, "", ""},
		{"corp other path", "registry.corp.example.com/other/x:1", false, "registry.corp.example.com/other/x:1", 0, "", ""},
		{"corp with the default https port is the same registry", "registry.corp.example.com:443/approved/x:1", true, "registry.corp.example.com/approved/x:1", 5, "", ""},
		{"corp with another port is another registry", "registry.corp.example.com:8443/approved/x:1", false, "registry.corp.example.com:8443/approved/x:1", 0, "", ""},
		{"corp subdomain", "eu.registry.corp.example.com/approved/x:1", false, "eu.registry.corp.example.com/approved/x:1", 0, "", ""},
		{"corp typo host", "regsitry.corp.example.com/approved/x:1", false, "regsitry.corp.example.com/approved/x:1", 0, "", "registry.corp.example.com/approved/**"},
		{"corp typo path", "registry.corp.example.com/aproved/x:1", false, "registry.corp.example.com/aproved/x:1", 0, "", "registry.corp.example.com/approved/**"},
		{"corp uppercase host normalizes", "REGISTRY.corp.example.com/approved/x:1", true, "registry.corp.example.com/approved/x:1", 5, "", ""},
		{"corp uppercase path invalid", "registry.corp.example.com/Approved/x:1", false, "", 0, "invalid reference", ""},
		{"mirror one label", "eu.mirror.example.net/library/nginx:1", true, "eu.mirror.example.net/library/nginx:1", 17, "", ""},
		{"mirror two labels", "a.b.mirror.example.net/x:1", false, "a.b.mirror.example.net/x:1", 0, "", ""},
		{"mirror bare", "mirror.example.net/x:1", false, "mirror.example.net/x:1", 0, "", ""},
		{"mirror suffix trick", "eu.mirror.example.net.evil.io/x:1", false, "eu.mirror.example.net.evil.io/x:1", 0, "", ""},
		{"mirror with port", "eu.mirror.example.net:5000/x:1", false, "eu.mirror.example.net:5000/x:1", 0, "", ""},
		{"typosquat separator", "myorg-base:2.0", false, "docker.io/library/myorg-base:2.0", 0, "", "docker.io/myorg/base"},
		{"typosquat underscore", "myorg_base:2.0", false, "docker.io/library/myorg_base:2.0", 0, "", "docker.io/myorg/base"},
		{"typosquat edit distance", "myorg/bsae:1.0", false, "docker.io/myorg/bsae:1.0", 0, "", "docker.io/myorg/base"},
		{"typosquat two edits", "myorgg/bas:1.0", false, "docker.io/myorgg/bas:1.0", 0, "", "docker.io/myorg/base"},
		{"far from anything", "totally/different:1.0", false, "docker.io/totally/different:1.0", 0, "", ""},
		{"myorg base allowed", "myorg/base:1.0", true, "docker.io/myorg/base:1.0", 18, "", ""},
		{"myorg base latest denied", "myorg/base", false, "docker.io/myorg/base:latest", 26, "", ""},
		{"localhost port", "localhost:5000/approved/busybox:1.0", true, "localhost:5000/approved/busybox:1.0", 19, "", ""},
		{"localhost nested not one segment", "localhost:5000/approved/a/b:1.0", false, "localhost:5000/approved/a/b:1.0", 0, "", ""},
		{"localhost other port", "localhost:5001/approved/busybox:1.0", false, "localhost:5001/approved/busybox:1.0", 0, "", "localhost:5000/approved/*"},
		{"localhost no port", "localhost/approved/busybox:1.0", false, "localhost/approved/busybox:1.0", 0, "", ""},
		{"localhost evil", "localhost:5000/evil/miner:1.0", false, "localhost:5000/evil/miner:1.0", 0, "", ""},
		{"ipv6 registry", "[::1]:5000/ipv6/app:1", true, "[::1]:5000/ipv6/app:1", 20, "", ""},
		{"ipv6 other port", "[::1]:5001/ipv6/app:1", false, "[::1]:5001/ipv6/app:1", 0, "", "[::1]:5000/ipv6/app"},
		{"ipv6 unbracketed invalid", "::1:5000/ipv6/app:1", false, "", 0, "invalid reference", ""},
		{"ip registry glob segment", "10.0.0.7:5000/team-a/svc:1", true, "10.0.0.7:5000/team-a/svc:1", 21, "", ""},
		{"ip registry glob empty part", "10.0.0.7:5000/team-/svc:1", false, "", 0, "invalid reference", ""},
		{"ip registry glob wrong prefix", "10.0.0.7:5000/teamx/svc:1", false, "10.0.0.7:5000/teamx/svc:1", 0, "", ""},
		{"ip registry glob two segments", "10.0.0.7:5000/team-a/b/svc:1", false, "10.0.0.7:5000/team-a/b/svc:1", 0, "", ""},
		{"double star zero segments", "quay.io/stable-base:1", true, "quay.io/stable-base:1", 22, "", ""},
		{"double star many segments", "quay.io/a/b/c/stable-base:1", true, "quay.io/a/b/c/stable-base:1", 22, "", ""},
		{"double star suffix trick", "quay.io/a/stable-basex:1", false, "quay.io/a/stable-basex:1", 0, "", ""},
		{"double star tail mismatch", "quay.io/a/stable-base/x:1", false, "quay.io/a/stable-base/x:1", 0, "", ""},
		{"digest pinned allowed", "ghcr.io/acme/tool@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true, "ghcr.io/acme/tool@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 8, "", ""},
		{"digest pinned other digest", "ghcr.io/acme/tool@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false, "ghcr.io/acme/tool@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 0, "", ""},
		{"digest rule tag alternative", "ghcr.io/acme/tool:v2", true, "ghcr.io/acme/tool:v2", 8, "", ""},
		{"digest rule wrong tag", "ghcr.io/acme/tool:v3", false, "ghcr.io/acme/tool:v3", 0, "", ""},
		{"digest rule wrong tag right digest", "ghcr.io/acme/tool:v3@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true, "ghcr.io/acme/tool:v3@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 8, "", ""},
		{"expired exception", "ghcr.io/acme/legacy:1.0", false, "ghcr.io/acme/legacy:1.0", 0, "the exception for ghcr.io/acme/legacy (INC-4411, testdata/decide.yaml:11) expired on 2026-01-31", ""},
		{"live exception", "ghcr.io/acme/temp:1.0", true, "ghcr.io/acme/temp:1.0", 14, "INC-5000", ""},
		{"full image id", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false, "", 0, "image ID", ""},
		{"bare image id", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false, "", 0, "image ID", ""},
		{"short id is a name", "0123456789ab", false, "docker.io/library/0123456789ab:latest", 26, "", ""},
		{"sha256 short is a name", "sha256:0123", false, "docker.io/library/sha256:0123", 0, "no allow rule matches", ""},
		{"digest without name", "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, "", 0, "invalid reference", ""},
		{"malformed digest", "nginx@sha256:abc", false, "", 0, "invalid reference", ""},
		{"uppercase repo", "Nginx:1.25", false, "", 0, "must be lowercase", ""},
		{"uppercase tag is valid", "nginx:1.25-RC", true, "docker.io/library/nginx:1.25-RC", 6, "", ""},
		{"empty", "", false, "", 0, "invalid reference", ""},
		{"spaces", "nginx 1.25", false, "", 0, "invalid reference", ""},
		{"leading slash", "/nginx:1.25", false, "", 0, "invalid reference", ""},
		{"trailing colon", "nginx:", false, "", 0, "invalid reference", ""},
		{"double colon", "nginx::1", false, "", 0, "invalid reference", ""},
		{"scheme", "https://registry.corp.example.com/approved/x:1", false, "", 0, "invalid reference", ""},
		{"tag too long", "nginx:111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111", false, "", 0, "invalid reference", ""},
		{"name too long", "registry.corp.example.com/approved/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", false, "", 0, "more than 255", ""},
		{"huge input", "registry.corp.example.com/approved/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/b:1", false, "", 0, "more than 1024", ""},
		{"unicode", "registry.corp.example.com/approved/ng\u00efnx:1", false, "", 0, "invalid reference", ""},
		{"newline injection", "nginx:1.25\nevil", false, "", 0, "invalid reference", ""},
		{"null byte", "nginx:1.25\x00", false, "", 0, "invalid reference", ""},
		{"path traversal", "registry.corp.example.com/approved/../evil:1", false, "", 0, "invalid reference", ""},
		{"double slash", "registry.corp.example.com/approved//x:1", false, "", 0, "invalid reference", ""},
		{"separators allowed in path", "registry.corp.example.com/approved/a__b.c-d:1", true, "registry.corp.example.com/approved/a__b.c-d:1", 5, "", ""},
		{"host only is a hub name", "registry:1.0", true, "docker.io/library/registry:1.0", 6, "", ""},
		{"localhost bare is a host", "localhost/x:1", false, "localhost/x:1", 0, "", ""},
	}
	if len(cases) < 80 {
		t.Fatalf("only %d references in the table", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.input, testNow)
			if d.Allowed != tc.allowed {
				t.Errorf("Decide(%q).Allowed = %v, want %v (reason: %s)", tc.input, d.Allowed, tc.allowed, d.Reason)
			}
			if d.Reference != tc.reference {
				t.Errorf("Reference = %q, want %q", d.Reference, tc.reference)
			}
			if d.Input != tc.input {
				t.Errorf("Input = %q, want the input as given", d.Input)
			}
			wantRule := ""
			if tc.ruleLine > 0 {
				wantRule = "testdata/decide.yaml:" + itoa(tc.ruleLine)
			}
			if got := d.RuleSource(); got != wantRule {
				t.Errorf("RuleSource() = %q, want %q (reason: %s)", got, wantRule, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.reason)
			}
			if d.Resembles != tc.resembles {
				t.Errorf("Resembles = %q, want %q", d.Resembles, tc.resembles)
			}
			if d.Reference == "" && d.Allowed {
				t.Errorf("an unparsable reference was allowed")
			}
			if (d.Err() == nil) != d.Allowed {
				t.Errorf("Err() = %v for Allowed = %v", d.Err(), d.Allowed)
			}
		})
	}
}

func itoa(n int) string {
	return strconv.Itoa(n)
}
