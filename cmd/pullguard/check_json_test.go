package main

import (
	"encoding/json"
	"fmt"
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

// FuzzDecisionText: the text line is what formatting it with fmt writes.
func FuzzDecisionText(f *testing.F) {
	for _, s := range []string{"nginx:1", "a\"b", "Bad Ref", "ng\u00efnx", "\x00\n\t", "\u2028", "\xff\xfe", ""} {
		f.Add(s, s+"x", true, s, 12, "")
	}
	f.Add("ghrc.io/a:1", "ghrc.io/a:1", false, "", 0, "ghcr.io/a")
	f.Fuzz(func(t *testing.T, input, reference string, allowed bool, file string, line int, resembles string) {
		d := policy.Decision{Input: input, Reference: reference, Allowed: allowed, Reason: "because", Resembles: resembles}
		if file != "" || line != 0 {
			d.Rule = &policy.Rule{Source: policy.Position{File: file, Line: line}}
		}
		verdict, ref, rule := "DENY ", d.Reference, d.RuleSource()
		if d.Allowed {
			verdict = "ALLOW"
		}
		if ref == "" {
			ref = fmt.Sprintf("%q", d.Input)
		}
		if rule == "" {
			rule = "default"
		}
		want := fmt.Sprintf("%s %s %s: %s", verdict, ref, rule, d.Reason)
		if d.Resembles != "" {
			want += " (resembles " + d.Resembles + ")"
		}
		if got := string(appendDecisionText(nil, d)); got != want+"\n" {
			t.Fatalf("got  %q\nwant %q", got, want+"\n")
		}
	})
}
