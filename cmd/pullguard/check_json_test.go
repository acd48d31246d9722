package main

import (
	"encoding/json"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// FuzzDecisionJSON: the hand-written JSON line is byte for byte what
// encoding/json makes of the same result.
func FuzzDecisionJSON(f *testing.F) {
	for _, s := range []string{"nginx:1", "a\"b", "<script>&", "ng\u00efnx", "\x00\n\t", "\u2028", "\xff\xfe", ""} {
		f.Add(s, s+"x", true, s, 12)
	}
	f.Add("nginx", "", false, "", 0)
	f.Add("ghcr.io/a/b:1", "ghcr.io/a/b:1", false, "p.yaml", 3) // normalized as written
	f.Add("a<b\u2028", "a<b\u2028", true, "", 0)
	f.Fuzz(func(t *testing.T, input, reason string, allowed bool, file string, line int) {
		d := policy.Decision{Input: input, Reference: reason, Allowed: allowed, Reason: reason, Resembles: input}
		if file != "" || line != 0 {
			d.Rule = &policy.Rule{Source: policy.Position{File: file, Line: line}}
		}
		want, err := json.Marshal(checkResult{Input: d.Input, Reference: d.Reference, Allowed: d.Allowed, Rule: d.RuleSource(), Reason: d.Reason, Resembles: d.Resembles})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(appendDecisionJSON(nil, d)); got != string(want)+"\n" {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}
