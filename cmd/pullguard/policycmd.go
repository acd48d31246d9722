package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with policy files",
	}
	cmd.AddCommand(newPolicyValidateCmd())
	return cmd
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
			return nil
		},
	}
	pf.register(cmd.Flags())
	return cmd
}
