package main

import (
	"context"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/daemon/policysource"
	"github.com/pullguard/pullguard/policy"
)

// sourceFlags say where the policy comes from when it is not local files.
type sourceFlags struct {
	source   string
	keys     []string
	interval time.Duration
	stateDir string
}

func (f *sourceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.source, "policy-source", "", "take the policy from a signed OCI artifact, oci://REGISTRY/REPO:TAG or @sha256:DIGEST (made by pullguard policy push, signed with cosign), instead of --policy")
	cmd.Flags().StringArrayVar(&f.keys, "policy-source-key", nil, "public key (cosign.pub) the policy artifact must be signed with; repeat for several")
	cmd.Flags().DurationVar(&f.interval, "policy-source-interval", policysource.DefaultInterval, "check the policy source this often (less up to a tenth at random)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", policysource.DefaultStateDir, "root-only directory where the verified policy artifacts, and the verdicts kept across restarts, are kept")
}

// apply, when --policy-source is set, finds the policy to start with and
// points cfg at the source instead of local files. Local drop-ins are
// refused rather than layered: the signed artifact is the whole policy,
// and a file beside it would change what the security team signed. The
// main file (--policy, which packages install) is not read.
func (f *sourceFlags) apply(ctx context.Context, pf policyFlags, cfg *daemon.Config, m *metrics.Metrics, log *logrus.Logger) error {
	if f.source == "" {
		return nil
	}
	if dropIns, err := policy.DropInFiles(pf.path); err != nil || len(dropIns) > 0 {
		return usageError("--policy-source: local drop-ins are not layered on a signed policy; move them into the artifact, or away: %s%v",
			strings.Join(dropIns, ", "), errOrEmpty(err))
	}
	src, err := policysource.New(policysource.Options{
		Source: f.source, Keys: f.keys, Interval: f.interval, StateDir: f.stateDir,
		LoadOptions: cfg.LoadOptions, Log: log, Observer: m,
	})
	if err != nil {
		return usageError("%v", err)
	}
	initial, err := src.Start(ctx)
	if err != nil {
		// Not exitUsage: the unit does not restart after that status
		// (RestartPreventExitStatus=2), and a registry that is down at a
		// host's first start must be retried.
		return &exitError{code: 1, err: err}
	}
	log.Infof("the policy comes from %s; the local policy file %s is not read", f.source, pf.path)
	cfg.PolicyPath, cfg.PolicyOrigin, cfg.PolicyFeed = initial.Path, initial.Origin, src
	setup := cfg.SetupWarnings
	cfg.SetupWarnings = func() []string {
		var ws []string
		if setup != nil {
			ws = setup()
		}
		return append(ws, src.Warnings()...)
	}
	return nil
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
