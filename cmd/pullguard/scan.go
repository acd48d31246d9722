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
	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
	"github.com/pullguard/pullguard/enforcer/dockerstore"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
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
		Short: "List every image and container on the host's runtimes that the policy denies",
		Long: `scan lists every image reference and container on Docker and containerd that
the policy denies, with the rule and reason, and what the daemon would do about
it: it runs the daemon's own reconcile planning without acting, so the two
cannot disagree. With --enforce it then does it, exactly as the daemon's
reconcile would (so in audit mode it still only reports).

containerd is scanned when --containerd-address names its socket (it is
none by default here, so that a Docker host's scan stays what it was). As in
the daemon, Docker's namespaces (moby, plugins.moby) are then left to
Docker's scan.

Exit status: 0 if nothing is denied, 1 if anything is, 2 on a usage or
policy error or when a runtime to scan cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageError("--output must be text or json, not %q", output)
			}
			p, err := policy.Load(pf.path, pf.loadOptions())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if !rf.docker() && !rf.containerd() {
				return usageError("nothing to scan: --docker-host and --containerd-address are both none")
			}
			ctx := cmd.Context()
			var scanners []scanner
			// One verifier for every runtime, as in the daemon.
			reg := registry.New(registry.Options{})
			judge := evidence.New(signature.New(reg), provenance.New(reg), logrus.StandardLogger())
			if rf.docker() {
				s, err := dockerScanner(ctx, rf, judge)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				scanners = append(scanners, s)
			}
			if rf.containerd() {
				s, err := containerdScanner(ctx, rf, judge)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				defer s.close()
				scanners = append(scanners, s)
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			found := 0
			for _, s := range scanners {
				findings, err := s.scan(ctx, p, time.Now())
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				found += len(findings)
				for _, f := range findings {
					if err := writeFinding(w, output, f); err != nil {
						return err
					}
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if enforce {
				if err := enforceOnce(ctx, scanners, p, cmd.ErrOrStderr()); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			if found > 0 {
				return &exitError{code: exitDenied}
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	rf.register(cmd)
	// Scanning is asked for runtime by runtime: containerd only when its
	// socket is named.
	rf.containerdAddress = "none"
	cmd.Flags().Lookup("containerd-address").DefValue = "none"
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one object a line)")
	cmd.Flags().BoolVar(&enforce, "enforce", false, "act on what was found, as the daemon would")
	return cmd
}

// scanner is one runtime to scan: the daemon's planning without acting,
// and, for --enforce, one reconcile of a guard.
type scanner struct {
	scan  func(ctx context.Context, p *policy.Policy, now time.Time) ([]enforcer.Finding, error)
	guard func(p *policy.Policy, rep enforcer.Reporter, log logrus.FieldLogger) interface{ Reconcile(context.Context) error }
	close func()
}

// The runtimes' clients scan connects with; the golden test
// (scan_golden_test.go) puts fake runtimes behind them.
var (
	newDockerAPI     = dockerguard.NewAPI
	newContainerdAPI = cdguard.NewAPI
)

func dockerScanner(ctx context.Context, rf runtimeFlags, judge *evidence.Judge) (scanner, error) {
	api, err := newDockerAPI(rf.dockerHost)
	if err != nil {
		return scanner{}, fmt.Errorf("--docker-host: %w", err)
	}
	if _, err := api.Ping(ctx); err != nil {
		return scanner{}, fmt.Errorf("cannot reach Docker at %s: %w", rf.dockerHost, err)
	}
	return scanner{
		scan: func(ctx context.Context, p *policy.Policy, now time.Time) ([]enforcer.Finding, error) {
			return dockerguard.Scan(ctx, api, p, now, judge)
		},
		guard: func(p *policy.Policy, rep enforcer.Reporter, log logrus.FieldLogger) interface{ Reconcile(context.Context) error } {
			return dockerguard.New(api, staticPolicy{p}, rep, log, dockerguard.WithEvidence(judge))
		},
		close: func() {},
	}, nil
}

func containerdScanner(ctx context.Context, rf runtimeFlags, judge *evidence.Judge) (scanner, error) {
	api, err := newContainerdAPI(rf.containerdAddress)
	if err != nil {
		return scanner{}, fmt.Errorf("--containerd-address: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := api.Namespaces(pctx); err != nil {
		api.Close()
		return scanner{}, fmt.Errorf("cannot reach containerd at %s: %w", rf.containerdAddress, err)
	}
	opts := []cdguard.Option{cdguard.WithEvidence(judge)}
	if len(rf.containerdNamespace) > 0 {
		opts = append(opts, cdguard.WithNamespaces(rf.containerdNamespace))
	}
	if rf.docker() {
		// What dockerd accounts for in its namespaces is the Docker
		// scan's; the rest is containerd's, as in the daemon.
		d, err := newDockerAPI(rf.dockerHost)
		if err != nil {
			api.Close()
			return scanner{}, fmt.Errorf("--docker-host: %w", err)
		}
		view, err := dockerstore.NewDocker(d, rf.dockerHost)
		if err != nil {
			api.Close()
			return scanner{}, fmt.Errorf("--docker-host: %w", err)
		}
		opts = append(opts, cdguard.WithOwner(dockerstore.NewOwner(view, logrus.New())))
	}
	return scanner{
		scan: func(ctx context.Context, p *policy.Policy, now time.Time) ([]enforcer.Finding, error) {
			return cdguard.Scan(ctx, api, p, now, opts...)
		},
		guard: func(p *policy.Policy, rep enforcer.Reporter, log logrus.FieldLogger) interface{ Reconcile(context.Context) error } {
			return cdguard.New(api, staticPolicy{p}, rep, log, opts...)
		},
		close: func() { api.Close() },
	}, nil
}

type scanResult struct {
	Runtime        string `json:"runtime"`
	Namespace      string `json:"namespace,omitempty"`
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
	// Provenance, for a Docker image: the allowed repository digest that
	// vouches for its content, or empty when none does.
	Provenance *string `json:"provenance,omitempty"`
}

func writeFinding(w io.Writer, format string, f enforcer.Finding) error {
	r := scanResult{
		Runtime: f.Runtime, Namespace: f.Namespace,
		Kind: string(f.Kind), Reference: f.Reference, ImageID: f.ImageID, ContainerID: f.ContainerID,
		ContainerName: f.ContainerName, ContainerState: f.ContainerState, Rule: f.Decision.RuleSource(),
		Reason: f.Decision.Reason, Resembles: f.Decision.Resembles, Action: string(f.Action), Note: f.Note,
	}
	if f.Kind == enforcer.FindingImage && f.Runtime == enforcer.RuntimeDocker {
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
	if f.Kind == enforcer.FindingContainer {
		what = fmt.Sprintf("%s (%s, %s) from %s", shortHex(r.ContainerID), r.ContainerName, r.ContainerState, r.Reference)
		if f.Runtime == enforcer.RuntimeContainerd {
			what = fmt.Sprintf("%s from %s", r.ContainerID, r.Reference)
		}
	}
	if f.Namespace != "" {
		what = "containerd/" + f.Namespace + " " + what
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

// enforceOnce runs one reconcile of each runtime with a reporter that
// prints each action.
func enforceOnce(ctx context.Context, scanners []scanner, p *policy.Policy, out io.Writer) error {
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
		if r.Namespace != "" {
			what = "containerd/" + r.Namespace + " " + what
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
	for _, s := range scanners {
		if err := s.guard(p, rep, log).Reconcile(ctx); err != nil {
			return err
		}
	}
	return nil
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
