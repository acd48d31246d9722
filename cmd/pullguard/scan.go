package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
	"github.com/pullguard/pullguard/policy"
)

func newScanCmd() *cobra.Command {
	var (
		pf      policyFlags
		rf      runtimeFlags
		output  string
		enforce bool
	)
	cmd := &cobra.Command{
		Use:   "scan [--enforce]",
		Short: "List every image name and container on the Docker host that the policy denies",
		Long: `scan lists every image reference and container on the Docker host that the
policy denies, with the rule and reason, and what the daemon would do about
it. With --enforce it then does it, exactly as the daemon's reconcile would
(so in audit mode it still only reports).

Exit status: 0 if nothing is denied, 1 if anything is, 2 on a usage or
policy error or when Docker cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output must be text or json, not %q", output)
			}
			p, err := pf.load()
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if !rf.docker() {
				return usageError("scan needs Docker: --docker-host is none")
			}
			api, err := dockerguard.NewAPI(rf.dockerHost)
			if err != nil {
				return usageError("--docker-host: %v", err)
			}
			ctx := cmd.Context()
			if _, err := api.Ping(ctx); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("cannot reach Docker at %s: %w", rf.dockerHost, err)}
			}
			findings, err := dockerguard.Scan(ctx, api, p, time.Now())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			for _, f := range findings {
				if err := writeFinding(w, output, f); err != nil {
					return err
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if enforce {
				if err := enforceOnce(ctx, api, p, cmd.ErrOrStderr()); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			if len(findings) > 0 {
				return &exitError{code: exitDenied}
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	rf.registerDocker(cmd) // containerd hosts: the daemon's reconcile; scan covers Docker
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one object a line)")
	cmd.Flags().BoolVar(&enforce, "enforce", false, "act on what was found, as the daemon would")
	return cmd
}

type scanResult struct {
	Kind           string `json:"kind"`
	Reference      string `json:"reference"`
	ImageID        string `json:"image_id,omitempty"`
	ContainerID    string `json:"container_id,omitempty"`
	ContainerName  string `json:"container_name,omitempty"`
	ContainerState string `json:"container_state,omitempty"`
	Rule           string `json:"rule"`
	Reason         string `json:"reason"`
	Resembles      string `json:"resembles,omitempty"`
	Action         string `json:"action"`
	Note           string `json:"note,omitempty"`
	// Provenance, for an image: the allowed repository digest that vouches
	// for its content, or empty when none does.
	Provenance *string `json:"provenance,omitempty"`
}

func writeFinding(w io.Writer, format string, f dockerguard.Finding) error {
	r := scanResult{
		Kind: string(f.Kind), Reference: f.Reference, ImageID: f.ImageID, ContainerID: f.ContainerID,
		ContainerName: f.ContainerName, ContainerState: f.ContainerState, Rule: f.Decision.RuleSource(),
		Reason: f.Decision.Reason, Resembles: f.Decision.Resembles, Action: string(f.Action), Note: f.Note,
	}
	if f.Kind == dockerguard.FindingImage {
		r.Provenance = &f.Provenance
	}
	if format == "json" {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	what := r.Reference
	if f.Kind == dockerguard.FindingContainer {
		what = fmt.Sprintf("%s (%s, %s) from %s", shortHex(r.ContainerID), r.ContainerName, r.ContainerState, r.Reference)
	}
	rule := r.Rule
	if rule == "" {
		rule = "default"
	}
	line := fmt.Sprintf("DENY  %-9s %s %s: %s -> %s", r.Kind, what, rule, r.Reason, r.Action)
	if r.Note != "" {
		line += " (" + r.Note + ")"
	}
	switch {
	case r.Provenance == nil:
	case *r.Provenance == "":
		line += " [content from no allowed repository]"
	default:
		line += " [content from " + *r.Provenance + "]"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// enforceOnce runs one reconcile with a reporter that prints each action.
func enforceOnce(ctx context.Context, api dockerguard.API, p *policy.Policy, out io.Writer) error {
	var mu sync.Mutex
	rep := enforcer.ReporterFunc(func(r enforcer.Record) {
		mu.Lock()
		defer mu.Unlock()
		what := r.Decision.Reference
		if what == "" {
			what = r.Decision.Input
		}
		if r.ContainerID != "" {
			what = "container " + shortHex(r.ContainerID)
		}
		line := fmt.Sprintf("%s %s", r.Action, what)
		if r.Err != nil {
			line += ": " + r.Err.Error()
		}
		fmt.Fprintln(out, line)
	})
	if p.Mode != policy.ModeEnforce {
		fmt.Fprintln(out, "the policy is in audit mode: nothing is changed (set mode: enforce to act)")
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	g := dockerguard.New(api, staticPolicy{p}, rep, log)
	return g.Reconcile(ctx)
}

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current() *policy.Policy { return s.p }

func shortHex(id string) string {
	if len(id) > 7 && id[6] == ':' { // sha256:
		id = id[7:]
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
