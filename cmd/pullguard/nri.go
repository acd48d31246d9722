package main

import (
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/nri"
)

// defaultNRISocket is containerd's NRI socket unless its config says
// otherwise.
const defaultNRISocket = "/var/run/nri/nri.sock"

// nriSocketFlag is --nri-socket; it remembers whether it was given, since
// the default is used only when the socket is there.
type nriSocketFlag struct {
	path  string
	given bool
}

func (f *nriSocketFlag) String() string     { return f.path }
func (f *nriSocketFlag) Type() string       { return "path" }
func (f *nriSocketFlag) Set(s string) error { f.path, f.given = s, true; return nil }

func (f *nriSocketFlag) register(cmd *cobra.Command) {
	f.path = defaultNRISocket
	cmd.Flags().Var(f, "nri-socket", `containerd's NRI socket, to refuse disallowed CRI containers before they are created; `+
		`the default is used when the socket exists at start, a path given is waited for; "none" turns NRI off`)
}

// nriPlugin is the NRI plugin the flag asks for, or nil: off, or the
// default socket is not there (containerd without NRI, or a host without
// containerd's CRI).
func nriPlugin(f nriSocketFlag, images nri.Images, policies enforcer.PolicySource, rep enforcer.Reporter,
	judge *evidence.Judge, obs enforcer.Observer, log logrus.FieldLogger) *nri.Plugin {
	if f.path == "none" || f.path == "" {
		return nil
	}
	if _, err := os.Stat(f.path); err != nil && !f.given {
		log.Infof("NRI: %s is not there; CRI containers are not judged before they are created (give --nri-socket to wait for it)", f.path)
		return nil
	}
	return nri.New(f.path, policies, images, judge, rep, log, nri.WithObserver(obs))
}
