package main

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"
	"github.com/spf13/cobra"
)

// --nri-socket: the default only when the socket is there, a path given
// always (waited for), none never.
func TestNRISocketFlag(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "nri.sock")
	l, err := net.Listen("unix", present)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	absent := filepath.Join(dir, "absent.sock")
	for _, tc := range []struct {
		name    string
		args    []string
		deflt   string // the default path, as if containerd's
		want    bool
		wantLog bool
	}{
		{name: "default, there", deflt: present, want: true},
		{name: "default, not there", deflt: absent, wantLog: true},
		{name: "given, not there", args: []string{"--nri-socket", absent}, deflt: present, want: true},
		{name: "none", args: []string{"--nri-socket", "none"}, deflt: present},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f nriSocketFlag
			cmd := &cobra.Command{}
			f.register(cmd)
			if f.path != defaultNRISocket {
				t.Fatalf("default %q, want %q", f.path, defaultNRISocket)
			}
			f.path = tc.deflt
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			log, hook := test.NewNullLogger()
			got := nriPlugin(f, nil, nil, nil, nil, nil, log)
			if (got != nil) != tc.want {
				t.Errorf("plugin built: %v, want %v", got != nil, tc.want)
			}
			if logged := len(hook.AllEntries()) > 0; logged != tc.wantLog {
				t.Errorf("logged %v, want %v", hook.AllEntries(), tc.wantLog)
			}
		})
	}
}
