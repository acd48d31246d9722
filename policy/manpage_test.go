package policy_test

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// policyPage is pullguard-policy(5)'s source; packaging/build.sh renders the
// packaged man page from it.
const policyPage = "../docs/pullguard-policy.5.md"

// acceptedKeys asks the loader which keys it accepts where the key "bogus"
// stands in yaml: the unknown-key error lists them ("expected one of: ...").
// Asking the loader itself, not a copy of its tables, is what keeps the test
// true when a key is added.
func acceptedKeys(t *testing.T, yaml string) []string {
	t.Helper()
	_, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(yaml)})
	var le *policy.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("loading %q: got %v, want a load error naming the accepted keys", yaml, err)
	}
	list := regexp.MustCompile(`unknown key "bogus" \(expected one of: ([^)]*)\)`)
	for _, p := range le.Problems {
		if m := list.FindStringSubmatch(p.Msg); m != nil {
			keys := strings.Split(m[1], ", ")
			slices.Sort(keys)
			return keys
		}
	}
	t.Fatalf("loading %q: no unknown-key error listing the accepted keys in:\n%v", yaml, err)
	return nil
}

// section is the text of the page's section "# name" (or "## name") up to
// the next heading of any level.
func section(t *testing.T, page, heading string) string {
	t.Helper()
	start := regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(heading) + `\n`).FindStringIndex(page)
	if start == nil {
		t.Fatalf("%s has no section %q", policyPage, heading)
	}
	rest := page[start[1]:]
	if end := regexp.MustCompile(`(?m)^#`).FindStringIndex(rest); end != nil {
		rest = rest[:end[0]]
	}
	return rest
}

// documentedKeys are the keys a section documents: its definition terms that
// start with "`key:`".
func documentedKeys(text string) []string {
	var keys []string
	for _, m := range regexp.MustCompile("(?m)^`([a-z-]+):`").FindAllStringSubmatch(text, -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	return keys
}

// TestPolicyPageDocumentsEveryKey holds pullguard-policy(5) to the loader:
// every key the loader accepts is documented, and every key the page
// documents is accepted, at each level of the file.
func TestPolicyPageDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(policyPage)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	rules := section(t, page, "Rules")
	// A signed-by entry's keys are written in the term of signed-by itself:
	// "`signed-by:` *[{key: PATH}, ...]*".
	var signedByKeys []string
	if m := regexp.MustCompile("(?m)^`signed-by:`(.*)$").FindStringSubmatch(rules); m != nil {
		for _, k := range regexp.MustCompile(`([a-z-]+): `).FindAllStringSubmatch(m[1], -1) {
			signedByKeys = append(signedByKeys, k[1])
		}
		slices.Sort(signedByKeys)
	}
	for _, level := range []struct {
		name       string
		documented []string
		yaml       string
	}{
		{"top level (SETTINGS)", documentedKeys(section(t, page, "SETTINGS")), "bogus: 1\n"},
		{"a rule (Rules)", documentedKeys(rules), "allow:\n  - image: a/b\n    bogus: 1\n"},
		{"a signed-by entry (Rules, signed-by)", signedByKeys, "allow:\n  - image: a/b\n    signed-by:\n      - bogus: x\n"},
	} {
		t.Run(level.name, func(t *testing.T) {
			accepted := acceptedKeys(t, level.yaml)
			for _, k := range accepted {
				if !slices.Contains(level.documented, k) {
					t.Errorf("the loader accepts %q in %s, but %s does not document it (documented: %v)", k, level.name, policyPage, level.documented)
				}
			}
			for _, k := range level.documented {
				if !slices.Contains(accepted, k) {
					t.Errorf("%s documents %q in %s, but the loader refuses it (accepted: %v)", policyPage, k, level.name, accepted)
				}
			}
		})
	}
}
