package main

import (
	"context"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/enforcer/verifier"
	"github.com/pullguard/pullguard/policy"
)

// verifyImageDeadline bounds signature verification in the verifier:
// containerd kills a verifier after 10 s (per_verifier_timeout) and then
// fails the pull with no reason, so pullguard answers first.
const verifyImageDeadline = 8 * time.Second

// newVerifyImageCmd is containerd 2.x's image-verifier binary contract:
// containerd runs every executable in its verifier bin directory with
// -name, -digest and -stdin-media-type, the descriptor on stdin, and
// refuses the pull unless it exits 0. Flags are parsed by the verifier
// itself because containerd passes single-dash long flags.
func newVerifyImageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify-image -name NAME -digest DIGEST -stdin-media-type TYPE",
		Short: "containerd image verifier: allow or refuse a pull before it happens",
		Long: `verify-image implements containerd's image-verifier plugin contract
(io.containerd.image-verifier.v1.bindir, containerd 2.0 and later). Put a
wrapper in containerd's verifier directory (default
/opt/containerd/image-verifier/bin):

  #!/bin/sh
  exec /usr/bin/pullguard verify-image "$@"

It exits 0 when the policy allows the image (or in audit mode) and 1 with the
reason on stdout when it does not; an unreadable policy or bad arguments exit
2, which containerd also treats as a refusal. The policy is
$PULLGUARD_POLICY or /etc/pullguard/policy.yaml: containerd's environment,
not pullguard's, is what the verifier sees.

For a signed-by rule, the digest containerd resolved is verified at the
registry (credentials from Docker's config.json, as the docker CLI finds
it); a registry that cannot be reached refuses the pull.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := os.Getenv("PULLGUARD_POLICY")
			if path == "" {
				path = policy.DefaultPath
			}
			load := func() (*policy.Policy, error) { return policy.Load(path, policy.LoadOptions{}) }
			ctx, cancel := context.WithTimeout(cmd.Context(), verifyImageDeadline)
			defer cancel()
			judge := evidence.New(signature.New(registry.New(registry.Options{})), nil, logrus.StandardLogger()).Pass(ctx).Judge
			if code := verifier.Main(args, cmd.InOrStdin(), cmd.OutOrStdout(), load, judge); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}
