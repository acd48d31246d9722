package verifier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/imageverifier/bindir"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestContainerdBindirContract runs Main the way containerd does: through
// containerd's own bindir verifier (github.com/containerd/containerd/v2
// pkg/imageverifier/bindir, the code behind the
// io.containerd.image-verifier.v1.bindir plugin), which execs each file in
// bin_dir with -name/-digest/-stdin-media-type, writes the descriptor to
// stdin, reads at most 32 KiB of stdout and judges by the exit status.
//
// The executable in bin_dir is this test binary (a symlink to it, named
// like the installed one); TestMain turns it into the verifier when
// childEnv is set. bindir passes containerd's environment on unchanged, so
// the child inherits childEnv and the policy path.
func TestContainerdBindirContract(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(binDir, "pullguard")); err != nil {
		t.Fatal(err)
	}
	v := bindir.NewImageVerifier(&bindir.Config{
		BinDir:       binDir,
		MaxVerifiers: 10,
		// containerd's default per_verifier_timeout (plugins/imageverifier),
		// in nanoseconds: the field's type is internal to containerd.
		PerVerifierTimeout: 10e9,
	})
	t.Setenv(childEnv, "1")

	manifest := func(d string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(d), Size: 527}
	}
	cases := []struct {
		name   string
		policy string
		ref    string
		desc   ocispec.Descriptor
		ok     bool
		reason string // exact, as containerd puts it into the pull's error
	}{
		{"allowed pull goes ahead", "enforce.yaml", "127.0.0.1:5000/approved/busybox:1.0", manifest(digestA), true,
			"pullguard => pullguard: allowed: 127.0.0.1:5000/approved/busybox:1.0@" + digestA + " matches allow rule 127.0.0.1:5000/approved/** (testdata/enforce.yaml:5)"},
		{"denied pull is blocked with the reason", "enforce.yaml", "127.0.0.1:5000/evil/miner:latest", manifest(digestA), false,
			"verifier pullguard rejected image (exit code 1): pullguard: 127.0.0.1:5000/evil/miner:latest@" + digestA + " is not allowed: matches deny rule ** tags [latest] (SEC-12 pin a version) (testdata/enforce.yaml:9)"},
		{"digest pin judged on the resolved digest", "enforce.yaml", "ghcr.io/acme/pinned:v1", manifest(digestB), false,
			"verifier pullguard rejected image (exit code 1): pullguard: ghcr.io/acme/pinned:v1@" + digestB + " is not allowed: no allow rule matches"},
		{"audit mode never blocks", "audit.yaml", "127.0.0.1:5000/evil/miner:latest", manifest(digestA), true,
			"pullguard => pullguard: audit mode, would block: 127.0.0.1:5000/evil/miner:latest@" + digestA + " is not allowed: matches deny rule ** tags [latest] (SEC-12 pin a version) (testdata/audit.yaml:9)"},
		{"unreadable policy blocks", "broken.yaml", "127.0.0.1:5000/approved/busybox:1.0", manifest(digestA), false,
			"verifier pullguard rejected image (exit code 2): pullguard: blocking the pull of 127.0.0.1:5000/approved/busybox:1.0: cannot load the policy: "},
		{"descriptor larger than a pipe buffer is read, not cut off", "enforce.yaml", "127.0.0.1:5000/evil/miner:1.0",
			ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.Digest(digestA), Size: 2048,
				Annotations: map[string]string{"large": strings.Repeat("0", 2<<16)}}, false,
			"verifier pullguard rejected image (exit code 1): pullguard: 127.0.0.1:5000/evil/miner:1.0@" + digestA + " is not allowed: no allow rule matches"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			abs, err := filepath.Abs(filepath.Join("testdata", tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(childPolicyEnv, abs)
			j, err := v.VerifyImage(context.Background(), tc.ref, tc.desc)
			if err != nil {
				t.Fatalf("containerd got no judgement (the pull fails either way): %v", err)
			}
			if j.OK != tc.ok {
				t.Errorf("OK = %v, want %v; reason %q", j.OK, tc.ok, j.Reason)
			}
			// The policy positions name the file as the child loaded it.
			reason := strings.ReplaceAll(j.Reason, abs, "testdata/"+tc.policy)
			if tc.policy == "broken.yaml" {
				if !strings.HasPrefix(reason, tc.reason) {
					t.Errorf("reason:\n got %s\nwant prefix %s", reason, tc.reason)
				}
				return
			}
			if reason != tc.reason {
				t.Errorf("reason:\n got %s\nwant %s", reason, tc.reason)
			}
		})
	}
}
