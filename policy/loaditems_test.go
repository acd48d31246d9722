package policy

import (
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pullguard/pullguard/internal/policygen"
)

// scanAllow scans the items of the allow: list that text, prefixed with
// "allow:\n", makes, and parses the same lines with the YAML library.
func scanAllow(t testing.TB, text string) (scanned []*yaml.Node, ok bool, library *yaml.Node, libErr error) {
	lines := splitLines([]byte("allow:\n" + text))
	lists, found := findBlockLists(lines)
	if !found || len(lists) == 0 || lists[0].kind != Allow {
		return nil, false, nil, fmt.Errorf("no block list")
	}
	bl := lists[0]
	first := bl.items[0]
	var s itemScanner
	scanned, ok = s.scanItems(lines, first, bl.end, len(bl.itemPrefix)-1)
	var doc []byte
	doc = append(doc, "list:\n"...)
	for _, ln := range lines[first:bl.end] {
		doc = append(append(doc, ln...), '\n')
	}
	var root yaml.Node
	if libErr = yaml.Unmarshal(doc, &root); libErr != nil {
		return scanned, ok, nil, libErr
	}
	if len(root.Content) != 1 || len(root.Content[0].Content) != 2 {
		return scanned, ok, nil, fmt.Errorf("not one list")
	}
	library = root.Content[0].Content[1]
	shiftLines(library, first-1)
	return scanned, ok, library, nil
}

// sameTree reports the first difference between two trees, in what the
// loader reads of a node.
func sameTree(a, b *yaml.Node, at string) error {
	if a.Kind != b.Kind || a.Style != b.Style || a.Tag != b.Tag || a.Value != b.Value ||
		a.Line != b.Line || a.Column != b.Column || a.Anchor != b.Anchor || a.Alias != b.Alias ||
		len(a.Content) != len(b.Content) {
		return fmt.Errorf("%s: scanned {kind %d style %d %s %q at %d:%d, %d children} but the YAML library made {kind %d style %d %s %q at %d:%d anchor %q, %d children}",
			at, a.Kind, a.Style, a.Tag, a.Value, a.Line, a.Column, len(a.Content),
			b.Kind, b.Style, b.Tag, b.Value, b.Line, b.Column, b.Anchor, len(b.Content))
	}
	for i := range a.Content {
		if err := sameTree(a.Content[i], b.Content[i], fmt.Sprintf("%s/%d", at, i)); err != nil {
			return err
		}
	}
	return nil
}

func checkScan(t testing.TB, text string) (scannedOK bool) {
	items, ok, lib, libErr := scanAllow(t, text)
	if !ok {
		return false
	}
	if libErr != nil {
		t.Fatalf("scanned, but the YAML library fails: %v\n%s", libErr, text)
	}
	if lib.Kind != yaml.SequenceNode || len(lib.Content) != len(items) {
		t.Fatalf("scanned %d items, the YAML library %d\n%s", len(items), len(lib.Content), text)
	}
	for i := range items {
		if err := sameTree(items[i], lib.Content[i], fmt.Sprint("item ", i)); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
	}
	return true
}

// TestScanItemsCommonShapes: the shapes rules are written in are read
// without the YAML library, into the trees it makes.
func TestScanItemsCommonShapes(t *testing.T) {
	org := policygen.Organization(40)
	org = org[strings.Index(org, "allow:\n")+len("allow:\n") : strings.Index(org, "deny:\n")]
	for name, text := range map[string]string{
		"organization": org,
		"fleet":        "  - image: ghcr.io/team0/**\n  - image: quay.io/t/svc-*\n    tags: [\"1.*\", \"2.*\"]\n",
		"comments and blank lines": "# head\n  - image: a/b   # trailing\n\n    # between\n    tags: [v1, 'v2', \"v3\"]  # flow\n" +
			"  - image: 'c/d'\n    reason: \"quoted: with # inside\"\n",
		"block list at the key's column": "  - image: a/b\n    tags:\n    - \"1.*\"\n    - stable # ok\n    reason: x\n",
		"block list indented":            "  - image: a/b\n    tags:   # the tags\n      - v1\n\n      - v2\n  - image: c\n",
		"wide item indicator":            "  -   image: a/b\n      expires: 2030-01-31\n      reason: PLAT-1, approved (by me) [ok] {x}\n",
		"ECR host and empty lists":       "  - image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app\n    tags: []\n    digests: [ ]\n",
		"signed-by and digests":          "  - image: a/b\n    digests: [sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef]\n",
		"unknown keys scanned too":       "  - image: a/b\n    tagz: x\n    image: again\n",
		"column 0 items":                 "- image: a/b\n  tags: [x]\n- image: c/d\n",
	} {
		t.Run(name, func(t *testing.T) {
			if !checkScan(t, text) {
				t.Fatalf("not scanned:\n%s", text)
			}
		})
	}
}

// TestScanItemsLeavesTheRestToYAML: what the scanner is not sure of goes
// to the YAML library, which then reads it (or reports it) as ever.
func TestScanItemsLeavesTheRestToYAML(t *testing.T) {
	for name, text := range map[string]string{
		"multi-line plain scalar":  "  - image: a/b\n    reason: a long\n      reason\n",
		"escape":                   "  - image: \"a\\/b\"\n",
		"doubled quote":            "  - image: 'it''s'\n",
		"anchor":                   "  - image: &x a/b\n",
		"alias":                    "  - image: *x\n",
		"number":                   "  - image: a/b\n    tags: [1.25]\n",
		"boolean":                  "  - image: a/b\n    reason: true\n",
		"null key":                 "  - image: a/b\n    null: x\n",
		"empty value":              "  - image: a/b\n    reason:\n",
		"non-ASCII":                "  - image: a/b\n    reason: café\n",
		"flow mapping":             "  - {image: a/b}\n",
		"item alone on its line":   "  -\n    image: a/b\n",
		"odd indentation":          "  - image: a/b\n     tags: [x]\n",
		"block scalar":             "  - image: a/b\n    reason: |\n      text\n",
		"mapping in a value":       "  - image: a/b\n    reason: a: b\n",
		"unterminated flow list":   "  - image: a/b\n    tags: [x,\n      y]\n",
		"invalid date":             "  - image: a/b\n    expires: 2030-02-31\n",
		"plain scalar item":        "  - a/b\n",
		"colon ending a flow item": "  - image: a/b\n    tags: [a:, b]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if checkScan(t, text) {
				t.Fatalf("scanned, but should have been left to the YAML library:\n%s", text)
			}
		})
	}
}

// FuzzScanItems: whatever the scanner reads, it reads as the YAML library
// does.
func FuzzScanItems(f *testing.F) {
	org := policygen.Organization(8)
	f.Add(org[strings.Index(org, "allow:\n")+len("allow:\n") : strings.Index(org, "deny:\n")])
	for _, s := range []string{
		"  - image: a/b # c\n    tags: [\"x\", y , 'z']\n",
		"  - image: a/b\n    tags:\n    - x\n    - 'y'\n    reason: r\n",
		"- image: 1/b\n  expires: 2030-01-31\n  reason: x y  z\n",
		"  - image: a/b\n    reason: x #y\n    tags: [a,b]\n",
		"  - image: a/b:c\n    reason: \"\"\n",
		"  -  image: a\n     tags:\n       - b\n",
		"  - image: a\n    tags: [ ]\n    signed-by: [x]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		checkScan(t, text)
	})
}

// TestWrittenAs: the check that spares building a pattern's normal form
// agrees with building it.
func TestWrittenAs(t *testing.T) {
	for _, s := range []string{
		"nginx", "docker.io/library/nginx", "library/nginx", "ghcr.io/a/b", "GHCR.io/a/b", "ghcr.io:443/a/b",
		"**", "**/x", "**/x/**", "registry.example.com:5000/team/**", "docker.io/team/svc-*", "*.example.com/**",
		"registry-1.docker.io/library/nginx", "a/b/**/**",
	} {
		p, err := parsePattern(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got, want := writtenAs(p, s), p.String() == s; got != want {
			t.Errorf("writtenAs(%q) = %v, but the normal form is %q", s, got, p.String())
		}
		if !writtenAs(p, p.String()) {
			t.Errorf("writtenAs(%q) is false for the normal form itself", p.String())
		}
	}
}
