package verifier

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// DescriptorMediaType is the -stdin-media-type containerd passes: stdin
// holds the image's OCI descriptor as JSON.
const DescriptorMediaType = "application/vnd.oci.descriptor.v1+json"

// Exit statuses of Main. containerd blocks the pull on any non-zero one;
// they differ so that an operator can tell a denial from a broken setup in
// containerd's log ("rejected image (exit code N)").
const (
	ExitAllowed = 0
	ExitDenied  = 1
	// ExitError: the arguments or the policy could not be read. The pull is
	// blocked: a guard that cannot read its policy must not wave pulls through.
	ExitError = 2
)

// maxDescriptorBytes bounds how much of stdin is decoded. A descriptor is a
// few hundred bytes; annotations can make it larger, never this large.
const maxDescriptorBytes = 1 << 20

// Main runs the image-verifier binary contract. args are the arguments
// after the program (or subcommand) name, exactly as containerd passes them:
// -name, -digest and -stdin-media-type, in Go flag syntax. It reads stdin to
// the end, so containerd's write of the descriptor never fails with a broken
// pipe, prints one line to stdout and returns the exit status.
//
// A command wiring Main in must hand it the raw arguments: containerd's
// single-dash long flags are not POSIX flags (cobra would read -name as -n
// -a -m -e), so such a command needs DisableFlagParsing.
//
// judge, when given, judges with the evidence the policy asks for (it
// verifies signatures for signed-by rules).
func Main(args []string, stdin io.Reader, stdout io.Writer, loadPolicy func() (*policy.Policy, error), judge ...Judger) int {
	fs := flag.NewFlagSet("pullguard verify-image", flag.ContinueOnError)
	// Usage text is not a reason; the parse error goes to stdout below.
	fs.SetOutput(io.Discard)
	name := fs.String("name", "", "image reference containerd is about to pull")
	digest := fs.String("digest", "", "digest of the manifest or index containerd resolved")
	mediaType := fs.String("stdin-media-type", "", "media type of the JSON on stdin")

	parseErr := fs.Parse(args)
	desc, stdinErr := readDescriptor(stdin, *mediaType)

	fail := func(code int, format string, a ...any) int {
		fmt.Fprintln(stdout, bound("pullguard: "+fmt.Sprintf(format, a...), MaxMessageBytes))
		return code
	}
	switch {
	case errors.Is(parseErr, flag.ErrHelp):
		return fail(ExitError, "usage: -name REFERENCE -digest DIGEST [-stdin-media-type %s] (the image-verifier contract of containerd)", DescriptorMediaType)
	case parseErr != nil:
		return fail(ExitError, "blocking the pull: cannot read the verifier arguments: %v", parseErr)
	case fs.NArg() > 0:
		return fail(ExitError, "blocking the pull: unexpected arguments %q", fs.Args())
	case *name == "":
		return fail(ExitError, "blocking the pull: no -name given")
	case stdinErr != nil:
		return fail(ExitError, "blocking the pull: %v", stdinErr)
	}
	if *digest == "" {
		*digest = desc.Digest
	} else if desc.Digest != "" && desc.Digest != *digest {
		return fail(ExitError, "blocking the pull: -digest %s differs from the descriptor's %s", *digest, desc.Digest)
	}

	p, err := loadPolicy()
	if err != nil {
		return fail(ExitError, "blocking the pull of %s: cannot load the policy: %v", *name, err)
	}
	var j Judger
	if len(judge) > 0 {
		j = judge[0]
	}
	r := JudgeWith(p, time.Now(), *name, *digest, j)
	fmt.Fprintln(stdout, r.Message)
	if r.Allowed {
		return ExitAllowed
	}
	return ExitDenied
}

// descriptor is the part of an OCI descriptor that is checked.
type descriptor struct {
	Digest string `json:"digest"`
}

// readDescriptor reads stdin to its end and decodes the descriptor when
// the media type says stdin holds one. Other media types (a later
// containerd may send something else) are read and ignored: the flags carry
// what is judged.
func readDescriptor(stdin io.Reader, mediaType string) (descriptor, error) {
	var d descriptor
	if stdin == nil {
		return d, nil
	}
	data, err := io.ReadAll(io.LimitReader(stdin, maxDescriptorBytes+1))
	// Drain what is beyond the limit so the writer is not cut off.
	_, _ = io.Copy(io.Discard, stdin)
	if err != nil {
		return d, fmt.Errorf("reading the descriptor on stdin: %w", err)
	}
	// An oversized descriptor is not decoded: the flags carry what is
	// judged, the descriptor only confirms the digest.
	if mediaType != DescriptorMediaType || len(data) == 0 || len(data) > maxDescriptorBytes {
		return d, nil
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("decoding the descriptor on stdin: %w", err)
	}
	return d, nil
}
