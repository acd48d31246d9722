package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/policy"
)

func newCheckCmd() *cobra.Command {
	var (
		pf      policyFlags
		output  string
		at      string
		offline bool
	)
	cmd := &cobra.Command{
		Use:   "check [flags] REF... | -",
		Short: "Judge image references against the policy",
		Long: `check prints, for each image reference, whether the policy allows it, the
normalized reference, the rule that decided (file:line) and why. "-" reads
references from standard input, one a line.

For a reference that a signed-by rule names, check resolves the tag at the
registry and verifies the digest's cosign signatures (credentials from
Docker's config.json); --offline skips that and denies such references.

Exit status: 0 if every reference is allowed, 1 if any is denied, 2 on a
usage or policy error.`,
		Example: `  pullguard check nginx:1.25 localhost:5000/evil/miner
  docker images --format '{{.Repository}}:{{.Tag}}' | pullguard check --output json -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError("--output must be text or json, not %q", output)
			}
			now := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usageError("--at: %v", err)
				}
				now = t
			}
			p, err := pf.load()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			refs, err := references(args, cmd.InOrStdin())
			if err != nil {
				return usageError("%v", err)
			}
			var sigs *signature.Verifier // nil: offline
			if !offline && p.RequiresSignatures() {
				sigs = signature.New(registry.New(registry.Options{}))
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			denied := false
			for _, r := range refs {
				d := signature.Decide(cmd.Context(), sigs, p, r, now)
				denied = denied || !d.Allowed
				if err := writeDecision(w, output, d); err != nil {
					return err
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if denied {
				return &exitError{code: exitDenied}
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one object a line)")
	cmd.Flags().BoolVar(&offline, "offline", false, "contact no registry: references that need a signature are denied")
	cmd.Flags().StringVar(&at, "at", "", "judge as of this RFC 3339 time instead of now (to see which exceptions will have expired)")
	return cmd
}

// references expands "-" into the lines of stdin; blank lines and lines
// starting with # are skipped so that a file of references can carry notes.
func references(args []string, stdin io.Reader) ([]string, error) {
	var refs []string
	for _, a := range args {
		if a != "-" {
			refs = append(refs, a)
			continue
		}
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			refs = append(refs, line)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading references from stdin: %w", err)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("no references to check")
	}
	return refs, nil
}

// checkResult is the JSON form of a decision, one object a line.
type checkResult struct {
	Input     string `json:"input"`
	Reference string `json:"reference"`
	Allowed   bool   `json:"allowed"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
	Resembles string `json:"resembles,omitempty"`
	// Signature is set where a signed-by rule decided: verified:<key
	// fingerprint>, missing, invalid or unverifiable (the journal's values).
	Signature string `json:"signature,omitempty"`
}

func writeDecision(w io.Writer, format string, d policy.Decision) error {
	if format == "json" {
		_, err := w.Write(appendDecisionJSON(make([]byte, 0, 256), d))
		return err
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
	line := fmt.Sprintf("%s %s %s: %s", verdict, ref, rule, d.Reason)
	if d.Resembles != "" {
		line += " (resembles " + d.Resembles + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// appendDecisionJSON appends a decision as one line of JSON, byte for byte
// what encoding/json makes of checkResult, without reflection: a CI job
// checks tens of thousands of references in one run, and encoding them
// cost as much as deciding them.
func appendDecisionJSON(b []byte, d policy.Decision) []byte {
	b = append(b, `{"input":`...)
	b = appendJSONString(b, d.Input)
	b = append(b, `,"reference":`...)
	b = appendJSONString(b, d.Reference)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, d.RuleSource())
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, d.Reason)
	if d.Resembles != "" {
		b = append(b, `,"resembles":`...)
		b = appendJSONString(b, d.Resembles)
	}
	if d.Signature != nil {
		b = append(b, `,"signature":`...)
		b = appendJSONString(b, d.Signature.Result.Field())
	}
	return append(b, "}\n"...)
}

// appendJSONString writes plain printable ASCII directly and leaves
// anything else (escapes, HTML characters, other encodings) to
// encoding/json, so the output never differs from it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
