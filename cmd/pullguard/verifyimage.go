package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer/verifier"
	"github.com/pullguard/pullguard/policy"
)

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
not pullguard's, is what the verifier sees.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := os.Getenv("PULLGUARD_POLICY")
			if path == "" {
				path = policy.DefaultPath
			}
			load := func() (*policy.Policy, error) { return policy.Load(path, policy.LoadOptions{}) }
			if code := verifier.Main(args, cmd.InOrStdin(), cmd.OutOrStdout(), load); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}
