package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pullguard/pullguard/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// policyFlags are the flags every command that reads the policy shares.
type policyFlags struct {
	path     string
	insecure bool
}

func (f *policyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "policy", policy.DefaultPath, "policy file; drop-ins are read from policy.d/ beside it")
	fs.BoolVar(&f.insecure, "insecure-policy-permissions", false, "accept a policy file, or a directory above it, that group or others can write or that another user owns (development only)")
}

func (f *policyFlags) loadOptions() policy.LoadOptions {
	return policy.LoadOptions{InsecurePermissions: f.insecure}
}

func (f *policyFlags) load() (*policy.Policy, error) {
	return policy.Load(f.path, f.loadOptions())
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "pullguard",
		Short: "Keep container hosts on approved images",
		Long: `pullguard judges every image reference on a Docker or containerd host against an
allowlist policy, and removes or blocks what the policy does not allow.

Every flag can also be set in the environment as PULLGUARD_<FLAG>, e.g.
PULLGUARD_POLICY=/etc/pullguard/policy.yaml, as /etc/default/pullguard does.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags(), os.LookupEnv)
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		newCheckCmd(),
		newLintCmd(),
		newPolicyCmd(),
		newVersionCmd(),
		newDaemonCmd(),
		newScanCmd(),
		newVerifyImageCmd(),
	)
	return root
}

// flagsFromEnv sets each flag not given on the command line from
// PULLGUARD_<NAME> (dashes become underscores), so that a systemd
// EnvironmentFile configures the daemon without editing the unit.
func flagsFromEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := "PULLGUARD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok && v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = &exitError{code: exitUsage, err: fmt.Errorf("%s=%q: %w", name, v, e)}
			}
		}
	})
	return err
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pullguard's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "pullguard", buildVersion())
			return nil
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// usageError marks bad arguments so they exit with status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}
