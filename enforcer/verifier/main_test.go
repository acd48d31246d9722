package verifier

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/main.golden")

// childEnv makes the test binary act as the verifier binary, the way
// containerd runs one; see TestMain and contract_test.go.
const (
	childEnv       = "PULLGUARD_VERIFIER_TEST_CHILD"
	childPolicyEnv = "PULLGUARD_VERIFIER_TEST_POLICY"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, func() (*policy.Policy, error) {
			return policy.Load(os.Getenv(childPolicyEnv), policy.LoadOptions{InsecurePermissions: true})
		}))
	}
	os.Exit(m.Run())
}

func fixtureLoader(name string) func() (*policy.Policy, error) {
	return func() (*policy.Policy, error) {
		return policy.LoadFiles([]string{"testdata/" + name}, policy.LoadOptions{InsecurePermissions: true})
	}
}

func descriptorJSON(digest string) string {
	return `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest + `","size":527}` + "\n"
}

// argv is what containerd's bindir verifier passes (bindir.go, runVerifier).
func argv(name, digest string) []string {
	return []string{"-name", name, "-digest", digest, "-stdin-media-type", DescriptorMediaType}
}

// TestMainGolden pins what containerd shows users and logs for each outcome.
func TestMainGolden(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		stdin  string
		policy string
	}{
		{"allowed", argv("127.0.0.1:5000/approved/busybox:1.0", digestA), descriptorJSON(digestA), "enforce.yaml"},
		{"denied", argv("127.0.0.1:5000/evil/miner:latest", digestA), descriptorJSON(digestA), "enforce.yaml"},
		{"audit lets a denied pull through", argv("127.0.0.1:5000/evil/miner:latest", digestA), descriptorJSON(digestA), "audit.yaml"},
		{"digest taken from the descriptor when -digest is absent",
			[]string{"-name", "ghcr.io/acme/pinned:v1", "-stdin-media-type", DescriptorMediaType}, descriptorJSON(digestA), "enforce.yaml"},
		{"-digest and descriptor disagree", argv("ghcr.io/acme/pinned:v1", digestA), descriptorJSON(digestB), "enforce.yaml"},
		{"unknown stdin media type is ignored", []string{"-name", "127.0.0.1:5000/approved/busybox:1.0", "-digest", digestA, "-stdin-media-type", "application/x-future"}, "not json", "enforce.yaml"},
		{"descriptor that is not JSON", argv("127.0.0.1:5000/approved/busybox:1.0", digestA), "not json", "enforce.yaml"},
		{"policy that does not load blocks", argv("127.0.0.1:5000/approved/busybox:1.0", digestA), descriptorJSON(digestA), "broken.yaml"},
		{"missing policy blocks", argv("127.0.0.1:5000/approved/busybox:1.0", digestA), descriptorJSON(digestA), "missing.yaml"},
		{"no -name", []string{"-digest", digestA}, "", "enforce.yaml"},
		{"unknown flag", append(argv("127.0.0.1:5000/approved/busybox:1.0", digestA), "-future-flag", "x"), "", "enforce.yaml"},
		{"stray argument", append(argv("127.0.0.1:5000/approved/busybox:1.0", digestA), "extra"), "", "enforce.yaml"},
		{"help", []string{"-h"}, "", "enforce.yaml"},
	}
	var golden bytes.Buffer
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			stdin := &drainCheck{r: strings.NewReader(tc.stdin)}
			code := Main(tc.args, stdin, &out, fixtureLoader(tc.policy))
			if !stdin.eof {
				t.Errorf("stdin was not read to its end")
			}
			if n := strings.Count(out.String(), "\n"); n != 1 || !strings.HasSuffix(out.String(), "\n") {
				t.Errorf("stdout is not one line: %q", out.String())
			}
			fmt.Fprintf(&golden, "== %s\nargs: %s\nexit: %d\nstdout: %s\n", tc.name, strings.Join(tc.args, " "), code, out.String())
		})
	}
	compareGolden(t, "testdata/main.golden", golden.Bytes())
}

// TestMainExitCodes asserts the one thing containerd acts on, apart from the
// golden text.
func TestMainExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		ref    string
		policy string
		want   int
	}{
		{"allowed exits 0", "127.0.0.1:5000/approved/busybox:1.0", "enforce.yaml", ExitAllowed},
		{"denied exits 1", "127.0.0.1:5000/evil/miner:1.0", "enforce.yaml", ExitDenied},
		{"audit exits 0 for a denial", "127.0.0.1:5000/evil/miner:1.0", "audit.yaml", ExitAllowed},
		{"broken policy exits 2", "127.0.0.1:5000/approved/busybox:1.0", "broken.yaml", ExitError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			got := Main(argv(tc.ref, digestA), strings.NewReader(descriptorJSON(digestA)), &out, fixtureLoader(tc.policy))
			if got != tc.want {
				t.Errorf("exit = %d, want %d; stdout %q", got, tc.want, out.String())
			}
		})
	}
}

func TestMainDrainsLargeStdin(t *testing.T) {
	big := strings.Repeat("x", 3*maxDescriptorBytes)
	stdin := &drainCheck{r: strings.NewReader(big)}
	var out bytes.Buffer
	code := Main(argv("127.0.0.1:5000/approved/busybox:1.0", digestA), stdin, &out, fixtureLoader("enforce.yaml"))
	if !stdin.eof {
		t.Fatal("stdin was not drained")
	}
	// Oversized descriptors are not decoded; the flags decide.
	if code != ExitAllowed {
		t.Fatalf("exit = %d, want %d: %s", code, ExitAllowed, out.String())
	}
}

func TestMainPolicyErrorIsReported(t *testing.T) {
	var out bytes.Buffer
	code := Main(argv("127.0.0.1:5000/approved/busybox:1.0", digestA), strings.NewReader(""), &out, func() (*policy.Policy, error) {
		return nil, errors.New("permission denied")
	})
	if code != ExitError || !strings.Contains(out.String(), "cannot load the policy: permission denied") {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
}

type drainCheck struct {
	r   io.Reader
	eof bool
}

func (d *drainCheck) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF {
		d.eof = true
	}
	return n, err
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
