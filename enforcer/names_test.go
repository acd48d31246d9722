package enforcer

import (
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/policy"
)

func TestDecideName(t *testing.T) {
	good, bad := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(`
allow:
  - image: reg.example/app
  - image: reg.example/pinned
    digests: ["` + good + `"]
deny:
  - image: reg.example/app
    digests: ["` + bad + `"]
`)})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		name    string
		names   []string
		allowed bool
		reason  string
	}{
		"tag whose content a deny rule lists": {"reg.example/app:v1",
			[]string{"reg.example/app:v1", "reg.example/app@" + bad}, false, "deny rule"},
		"tag with allowed content": {"reg.example/app:v1",
			[]string{"reg.example/app:v1", "reg.example/app@" + good}, true, "allow rule reg.example/app"},
		"tag pulled by a pinned digest": {"reg.example/pinned:v1",
			[]string{"reg.example/pinned:v1", "reg.example/pinned@" + good}, true, "digests"},
		"tag of pinned repository, other content": {"reg.example/pinned:v1",
			[]string{"reg.example/pinned:v1", "reg.example/pinned@" + bad}, false, "no allow rule"},
		"tag without digest is judged alone": {"reg.example/app:v1",
			[]string{"reg.example/app:v1"}, true, ""},
		"another repository's digest does not count": {"reg.example/app:v1",
			[]string{"reg.example/app:v1", "reg.example/other@" + bad}, true, ""},
		"any one denied digest denies": {"reg.example/app:v1",
			[]string{"reg.example/app@" + good, "reg.example/app@" + bad}, false, "deny rule"},
		"digest name judged alone": {"reg.example/app@" + bad,
			[]string{"reg.example/app:v1", "reg.example/app@" + bad}, false, "deny rule"},
		"unparsable": {"Bad", []string{"Bad"}, false, "invalid reference"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := DecideName(p, time.Now(), tc.name, tc.names)
			if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("allowed=%v reason=%q, want %v and %q", d.Allowed, d.Reason, tc.allowed, tc.reason)
			}
			if d.Input != tc.name {
				t.Errorf("Input = %q, want %q", d.Input, tc.name)
			}
		})
	}
}
