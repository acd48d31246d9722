// Package verifier blocks image pulls on containerd 2.x before any content
// is fetched. containerd's "bindir" image-verifier plugin
// (io.containerd.image-verifier.v1.bindir) runs every executable in its
// bin_dir for each pull made through the transfer service, as
//
//	<bin> -name <reference> -digest <manifest digest> -stdin-media-type application/vnd.oci.descriptor.v1+json
//
// with the image's OCI descriptor as JSON on stdin and containerd's own
// environment. Exit status 0 allows the pull, any other status blocks it,
// and stdout (trimmed, cut at 32 KiB) is the reason containerd shows. A
// verifier that does not finish within per_verifier_timeout (10 s by
// default) is killed with its process group, and the pull fails.
// See pkg/imageverifier/bindir/bindir.go and docs/image-verification.md in
// github.com/containerd/containerd/v2.
//
// The post-pull guard in enforcer/containerd still runs: CRI on containerd
// 1.x and clients that do not use the transfer service never call
// verifiers.
package verifier

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pullguard/pullguard/policy"
)

// MaxMessageBytes bounds the reason printed for containerd. containerd keeps
// 32 KiB of it; the reason ends up in the error a client (kubelet, ctr)
// shows and in containerd's log, where one short line is what helps.
const MaxMessageBytes = 2048

// Result is the verdict on one pull, with what a caller needs to report it.
type Result struct {
	// Allowed says whether the pull may go ahead. In audit mode it is true
	// even for a denied reference.
	Allowed bool
	// Message is the one-line reason printed for containerd, at most
	// MaxMessageBytes long.
	Message string
	// Decision is the policy's decision on the judged reference, which
	// carries the digest containerd resolved.
	Decision policy.Decision
	// Mode is the policy mode the verdict was made in.
	Mode policy.Mode
}

// Verify judges a pull containerd is about to make: name is the reference
// as containerd resolved it, digest the manifest (or index) digest it
// resolved to. It returns whether to allow the pull and a one-line reason.
func Verify(p *policy.Policy, now time.Time, name, digest string) (allowed bool, message string) {
	r := Judge(p, now, name, digest)
	return r.Allowed, r.Message
}

// Judge is Verify with the decision behind the verdict.
//
// The digest is attached to the name before judging ("repo:tag@digest"), so
// that allow rules pinned to digests apply and a deny rule for a tag still
// catches the tag. A name that already carries a different digest than the
// one containerd resolved is denied: the two must agree, and which content
// would be fetched is then unclear.
func Judge(p *policy.Policy, now time.Time, name, digest string) Result {
	return JudgeWith(p, now, name, digest, nil)
}

// Judger judges an image with evidence where the policy asks for it
// (enforcer/evidence verifies signatures for signed-by rules).
type Judger func(p *policy.Policy, img policy.Image, now time.Time) policy.Verdict

// JudgeWith is Judge, with judge asking for the evidence the policy needs
// (nil: none is had, so signed-by rules deny).
func JudgeWith(p *policy.Policy, now time.Time, name, digest string, judge Judger) Result {
	r := Result{Mode: p.Mode}
	// The one image verdict, with the content's digest: the tag is judged
	// as repo:tag@digest, and a name pinning other content is denied. The
	// pull is from the named repository: that is where the content comes
	// from, which is what local-images: deny asks of content.
	img := policy.Image{Names: []string{name}, Digest: digest, Pulling: true}
	if judge == nil {
		judge = func(p *policy.Policy, img policy.Image, now time.Time) policy.Verdict { return p.Judge(img, now, nil) }
	}
	v := judge(p, img, now)
	r.Decision = v.Decision
	d := r.Decision
	switch {
	case v.Outcome == policy.Allowed:
		r.Allowed = true
		r.Message = "pullguard: allowed: " + describeAllowed(d)
	case p.Mode != policy.ModeEnforce:
		r.Allowed = true
		r.Message = "pullguard: audit mode, would block: " + v.AsError().Error()
	default:
		r.Message = "pullguard: " + v.AsError().Error()
	}
	r.Message = bound(r.Message, MaxMessageBytes)
	return r
}

func describeAllowed(d policy.Decision) string {
	ref := d.Reference
	if ref == "" {
		ref = d.Input
	}
	msg := ref + " " + d.Reason
	if src := d.RuleSource(); src != "" {
		msg += " (" + src + ")"
	}
	return msg
}

// bound makes s one line of at most max bytes, cutting at a character
// boundary. Newlines would split containerd's log line and the error a user
// reads.
func bound(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	const ellipsis = "..."
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
