package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
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
Docker's config.json), and for an attestations rule its attestations;
--offline skips that and denies such references.

Exit status: 0 if every reference is allowed, 1 if any is denied, 2 on a
usage or policy error.`,
		Example: `  pullguard check nginx:1.25 localhost:5000/evil/miner
  docker images --format '{{.Repository}}:{{.Tag}}' | pullguard check --output json -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError("--output must be text or json, not %q", output)
			}
			// A run is short and its heap small (the policy and the list):
			// collecting garbage less often saves more than it costs.
			debug.SetGCPercent(400)
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
			if !offline && (p.RequiresSignatures() || p.RequiresAttestations()) {
				sigs = signature.New(registry.New(registry.Options{}))
			}
			w := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
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
		lines, err := stdinReferences(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading references from stdin: %w", err)
		}
		refs = append(refs, lines...)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("no references to check")
	}
	return refs, nil
}

// stdinReferences reads the references of stdin into one string, so that
// tens of thousands of lines cost a few allocations, not one each.
func stdinReferences(stdin io.Reader) ([]string, error) {
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var text []byte
	var ends []int
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		text = append(text, line...)
		ends = append(ends, len(text))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	all := string(text)
	refs := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		refs[i] = all[start:end]
		start = end
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
	// Attestation is set where an attestations rule decided: the
	// journal's PULLGUARD_ATTESTATION value.
	Attestation string `json:"attestation,omitempty"`
}

func writeDecision(w io.Writer, format string, d policy.Decision) error {
	var b []byte
	if bw, ok := w.(*bufio.Writer); ok {
		b = bw.AvailableBuffer() // appended in place: no copy, no allocation
	}
	if format == "json" {
		b = appendDecisionJSON(b, d)
	} else {
		b = appendDecisionText(b, d)
	}
	_, err := w.Write(b)
	return err
}

// appendDecisionText appends a decision as check's line of text:
// ALLOW|DENY, the reference (the input quoted if it did not parse), the
// rule or "default", the reason, and the resemblance if any.
func appendDecisionText(b []byte, d policy.Decision) []byte {
	if d.Allowed {
		b = append(b, "ALLOW "...)
	} else {
		b = append(b, "DENY  "...)
	}
	if d.Reference != "" {
		b = append(b, d.Reference...)
	} else {
		b = strconv.AppendQuote(b, d.Input) // what %q writes
	}
	b = append(b, ' ')
	if r := d.Rule; r != nil && r.Source.File != "" { // d.RuleSource(), not built
		b = append(b, r.Source.File...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.Source.Line), 10)
	} else {
		b = append(b, "default"...)
	}
	b = append(b, ": "...)
	b = append(b, d.Reason...)
	if d.Resembles != "" {
		b = append(b, " (resembles "...)
		b = append(b, d.Resembles...)
		b = append(b, ')')
	}
	return append(b, '\n')
}

// appendDecisionJSON appends a decision as one line of JSON, byte for byte
// what encoding/json makes of checkResult, without reflection: a CI job
// checks tens of thousands of references in one run, and encoding them
// cost as much as deciding them.
func appendDecisionJSON(b []byte, d policy.Decision) []byte {
	b = append(b, `{"input":`...)
	in := len(b)
	b = appendJSONString(b, d.Input)
	input := b[in:]
	b = append(b, `,"reference":`...)
	if d.Reference == d.Input {
		b = append(b, input...) // normalized as written: encoded the same
	} else {
		b = appendJSONString(b, d.Reference)
	}
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	b = append(b, `,"rule":`...)
	b = appendRuleSource(b, d.Rule)
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
	if d.Attestation != nil {
		b = append(b, `,"attestation":`...)
		b = appendJSONString(b, d.Attestation.Field())
	}
	return append(b, "}\n"...)
}

// appendRuleSource appends d.RuleSource() as a JSON string without
// building it: file, a colon, the line.
func appendRuleSource(b []byte, r *policy.Rule) []byte {
	if r == nil || r.Source.File == "" {
		return append(b, `""`...)
	}
	b = appendJSONString(b, r.Source.File)
	b[len(b)-1] = ':' // the closing quote; ":" and digits need no escaping
	b = strconv.AppendInt(b, int64(r.Source.Line), 10)
	return append(b, '"')
}

// appendJSONString writes plain printable ASCII directly and leaves
// anything else (escapes, HTML characters, other encodings) to
// encoding/json, so the output never differs from it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// jsonPlain marks the bytes encoding/json writes as they are: printable
// ASCII but for the quote, the backslash and the HTML characters <, > and &.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
