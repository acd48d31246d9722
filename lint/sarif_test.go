package lint

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// sarifSchema compiles the official SARIF 2.1.0 JSON schema (OASIS
// sarif-spec, Committee Specification 2.1.0), formats asserted.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, doc []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// TestSARIFValidates: the SARIF log of the whole corpus — denials of both
// rules, relative paths, a path needing escapes — is valid SARIF 2.1.0.
func TestSARIFValidates(t *testing.T) {
	schema := sarifSchema(t)
	fs := lintPaths(t, testLinter(t, nil), "testdata/corpus")
	// A file name that must be escaped in a URI, and an absolute one.
	extra, err := testLinter(t, nil).Lint(t.Context(), "dir with space/Dockerfile", Dockerfile, []byte("FROM evil.io/x:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := testLinter(t, nil).Lint(t.Context(), "/abs/Dockerfile", Dockerfile, []byte("FROM evil.io/x:1\n"))
	fs = append(append(fs, extra...), abs...)

	var out bytes.Buffer
	if err := WriteSARIF(&out, "1.2.3", fs); err != nil {
		t.Fatal(err)
	}
	if err := validate(t, schema, out.Bytes()); err != nil {
		t.Fatalf("SARIF output is not valid SARIF 2.1.0: %v", err)
	}
	golden(t, "corpus.sarif", out.Bytes())

	var log sarifLog
	if err := json.Unmarshal(out.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, f := range fs {
		if !f.Decision.Allowed {
			denied++
		}
	}
	results := log.Runs[0].Results
	if len(results) != denied {
		t.Fatalf("%d results for %d denials", len(results), denied)
	}
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.RuleID] = true
		if r.Locations[0].PhysicalLocation.Region.StartLine < 1 {
			t.Errorf("result without a start line: %+v", r)
		}
	}
	if !seen["image-not-allowed"] || !seen["image-unresolved"] {
		t.Errorf("want results of both rules, got %v", seen)
	}
	if got := results[len(results)-2].Locations[0].PhysicalLocation.ArtifactLocation; got.URI != "dir%20with%20space/Dockerfile" || got.URIBaseID != "%SRCROOT%" {
		t.Errorf("escaped relative artifact: %+v", got)
	}
	if got := results[len(results)-1].Locations[0].PhysicalLocation.ArtifactLocation; got.URI != "file:///abs/Dockerfile" {
		t.Errorf("absolute artifact: %+v", got)
	}
}

// TestSARIFSchemaRejects shows the validation can fail: SARIF that breaks
// the schema (an unknown level, no message) is rejected.
func TestSARIFSchemaRejects(t *testing.T) {
	schema := sarifSchema(t)
	var out bytes.Buffer
	fs, _ := testLinter(t, nil).Lint(t.Context(), "Dockerfile", Dockerfile, []byte("FROM evil.io/x:1\n"))
	if err := WriteSARIF(&out, "", fs); err != nil {
		t.Fatal(err)
	}
	for _, broken := range []string{
		strings.Replace(out.String(), `"level": "error"`, `"level": "fatal"`, 1),
		strings.Replace(out.String(), `"startLine": 1`, `"startLine": 0`, 1),
		strings.Replace(out.String(), `"version": "2.1.0"`, `"version": "2.0.0"`, 1),
	} {
		if broken == out.String() {
			t.Fatal("the replacement did not apply")
		}
		if err := validate(t, schema, []byte(broken)); err == nil {
			t.Errorf("schema accepted invalid SARIF:\n%s", broken)
		}
	}
}
