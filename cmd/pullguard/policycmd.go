package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/daemon/policysource"
	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with policy files",
	}
	cmd.AddCommand(newPolicyValidateCmd(), newPolicyPushCmd())
	return cmd
}

func newPolicyPushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "push DIR oci://REGISTRY/REPO:TAG",
		Short: "Pack a policy directory into an OCI artifact and push it",
		Long: `push packs DIR (its policy.yaml, policy.d/*.yaml drop-ins and the key files
they name by relative path: every regular file below DIR except hidden ones)
into a pullguard policy artifact and pushes it to the tag, for daemons started
with --policy-source. The policy is checked with the daemon's loader first: an
invalid policy is not pushed. It prints the artifact's digest; sign that with
cosign, which daemons require:

  digest=$(pullguard policy push ./policy oci://registry.example.com/pullguard/policy:prod)
  cosign sign --key cosign.key registry.example.com/pullguard/policy@$digest

The same files always make the same digest. Credentials come from Docker's
config.json, as for docker push.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			digest, err := policysource.Push(cmd.Context(), registry.New(registry.Options{}), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
}

func newPolicyValidateCmd() *cobra.Command {
	var pf policyFlags
	cmd := &cobra.Command{
		Use:   "validate [FILE...]",
		Short: "Check policy files and list every problem",
		Long: `validate loads the given files as one policy (by default the policy file and
its drop-ins) exactly as the daemon would, and lists every problem with
file:line:column. Exit status 0 if valid, 2 otherwise.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := policy.LoadOptions{InsecurePermissions: pf.insecure}
			var (
				p   *policy.Policy
				err error
			)
			if len(args) > 0 {
				p, err = policy.LoadFiles(args, opts)
			} else {
				p, err = policy.Load(pf.path, opts)
			}
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "policy is valid:", p.Describe())
			if p.TrustedRoot != nil {
				fmt.Fprintln(cmd.OutOrStdout(), "trusted root:", p.TrustedRoot.Summary())
			}
			for _, line := range p.ProfilesUsed() {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			if warn := p.TrustedRootWarning(time.Now()); warn != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			return nil
		},
	}
	pf.register(cmd.Flags())
	return cmd
}
