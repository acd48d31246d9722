package docker

import (
	"fmt"
	"strings"
	"time"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

// This file is the guard's pure core: what to remove from an image, and
// whether a container may exist. It calls no runtime and keeps no state.

// imageName is one of an image's names, parsed once.
type imageName struct {
	raw string // as Docker lists it; what is passed back to remove it
	// repo is the normalized repository (docker.io/library/busybox), or raw
	// when the name does not parse.
	repo string
	// norm is the normalized reference, or raw when it does not parse.
	norm   string
	digest bool // a repo@digest reference rather than a tag
}

func parseImageName(p *policy.Policy, raw string, digest bool) imageName {
	n := imageName{raw: raw, repo: raw, norm: raw, digest: digest}
	if r, err := p.ParseRef(raw); err == nil {
		n.repo, n.norm = r.Name, r.String
	}
	return n
}

// namesOf lists an image's names: tags first, then digest references.
// Docker's placeholders for "no name" are dropped.
func namesOf(p *policy.Policy, img Image) []imageName {
	names := make([]imageName, 0, len(img.RepoTags)+len(img.RepoDigests))
	for _, t := range img.RepoTags {
		if t != "" && t != "<none>:<none>" {
			names = append(names, parseImageName(p, t, false))
		}
	}
	for _, d := range img.RepoDigests {
		if d != "" && d != "<none>@<none>" {
			names = append(names, parseImageName(p, d, true))
		}
	}
	return names
}

// imageNames are img's names as namesOf lists them, raw.
func imageNames(p *policy.Policy, img Image) []string {
	var out []string
	for _, n := range namesOf(p, img) {
		out = append(out, n.raw)
	}
	return out
}

// normalize is the form two spellings of one reference share; an
// unparsable string stays as it is.
func normalize(s string) string {
	if r, err := policy.ParseRef(s); err == nil {
		return r.String
	}
	return s
}

// removal is one name the policy wants gone from an image.
type removal struct {
	// Name is the name as Docker lists it.
	Name     string
	Decision policy.Decision
	// Last is set when Docker will delete the image with this name: no
	// name is left once the plan's removals are done.
	Last bool
	// Blocked, when set, is why the name stays although the policy denies
	// it (wraps ErrWouldRemoveAllowed).
	Blocked error
}

// imagePlan is what the policy asks of one image.
type imagePlan struct {
	Image    Image
	Removals []removal
	// Empties is set when the removals leave the image without a name.
	Empties bool
	// Failed are the names the policy could not decide (a registry that did
	// not answer; Err says why): kept, reported failed, and judged again at
	// the next reconcile.
	Failed []policy.NameVerdict
	Err    error
	// VouchedBy is the allowed digest name that shows where the content
	// came from, or empty (scan shows it).
	VouchedBy string
}

// planImage decides which of img's names go. Every tag is judged on its own.
// A digest reference is judged on its own only when its repository has no
// tag on the image: otherwise it records where a tag was pulled from, and
// Docker removes it together with the repository's last tag. A tag whose
// removal would take an allowed digest reference with it stays (Blocked).
//
// only, when set, restricts the removals to those names (what events put
// on the image); the rest of the image's names are still taken into
// account. An image without names (dangling) is nameless.go's.
//
// ps answers what names cannot prove (nil: nothing is asked; signed-by
// rules deny, fail closed).
func planImage(img Image, p *policy.Policy, now time.Time, only []string, ps *evidence.Pass) imagePlan {
	plan := imagePlan{Image: img}
	names := namesOf(p, img)
	if len(names) == 0 {
		return namelessPlan(img, p, now, only)
	}
	var onlyNorm map[string]bool
	if only != nil {
		onlyNorm = make(map[string]bool, len(only))
		for _, o := range only {
			onlyNorm[normalize(o)] = true
		}
	}

	tagged := map[string]int{} // repository -> number of its tags on the image
	for _, n := range names {
		if !n.digest {
			tagged[n.repo]++
		}
	}

	// The names to judge: tags, and digests of untagged repositories (of
	// those the events named, if they named any); and every digest name,
	// which joins its repository's tags and may block a removal. Only
	// they are decided, so that a pass over an image with many names for
	// one event's name costs little: a burst of tags stays linear.
	judged := make([]bool, len(names))
	var sub []string
	at := make([]int, len(names)) // index into sub
	for i, n := range names {
		judged[i] = !(n.digest && tagged[n.repo] > 0) && (onlyNorm == nil || onlyNorm[n.norm])
		if judged[i] || n.digest {
			at[i] = len(sub)
			sub = append(sub, n.raw)
		}
	}
	verdict := judgeNames(ps, p, sub, &img, now)
	plan.VouchedBy = verdict.VouchedBy
	// The candidates: denied tags, and denied digests of untagged
	// repositories; what could not be decided stays.
	var cands []int
	decisions := make([]policy.Decision, len(names))
	for i := range names {
		if !judged[i] || verdict.Names[at[i]].ImageID {
			continue
		}
		decisions[i] = verdict.Names[at[i]].Decision
		switch evidence.ActOn(verdict, at[i]) {
		case evidence.Remove:
			cands = append(cands, i)
		case evidence.Fail:
			plan.Failed = append(plan.Failed, verdict.Names[at[i]])
			plan.Err = evidence.Failure(verdict)
		}
	}
	if len(cands) == 0 {
		return plan
	}

	// Docker drops a repository's digest references with its last tag. Where
	// that would take an allowed digest reference (or one the policy could
	// not decide), the first of the repository's doomed tags stays.
	removedTags := map[string]int{}
	for _, i := range cands {
		if !names[i].digest {
			removedTags[names[i].repo]++
		}
	}
	blocked := map[int]error{}
	for repo, n := range removedTags {
		if n < tagged[repo] {
			continue // a tag of the repository stays, and so do its digests
		}
		allowedDigest := ""
		for j, d := range names {
			// A digest name dockerd made up (containerd image store) is
			// no record of a pull: it goes with the tag it was made for.
			if nv := verdict.Names[at[j]]; d.digest && d.repo == repo && !nv.SetAside && nv.Outcome != policy.Denied {
				allowedDigest = d.raw
				break
			}
		}
		if allowedDigest == "" {
			continue
		}
		for _, i := range cands {
			if !names[i].digest && names[i].repo == repo {
				blocked[i] = fmt.Errorf("%w %s", ErrWouldRemoveAllowed, allowedDigest)
				break
			}
		}
	}

	// What is left afterwards: names not removed, minus the digests of
	// repositories that lose all their tags.
	gone := map[int]bool{}
	for _, i := range cands {
		if blocked[i] == nil {
			gone[i] = true
		}
	}
	tagsLeft := map[string]int{}
	for i, n := range names {
		if !n.digest && !gone[i] {
			tagsLeft[n.repo]++
		}
	}
	left := 0
	for i, n := range names {
		switch {
		case gone[i]:
		case n.digest && tagged[n.repo] > 0 && tagsLeft[n.repo] == 0:
		default:
			left++
		}
	}
	plan.Empties = left == 0

	lastGone := -1
	for _, i := range cands {
		if gone[i] {
			lastGone = i
		}
	}
	for _, i := range cands {
		plan.Removals = append(plan.Removals, removal{
			Name:     names[i].raw,
			Decision: decisions[i],
			Last:     plan.Empties && i == lastGone,
			Blocked:  blocked[i],
		})
	}
	return plan
}

// verdict is the judgement of a container.
type verdict struct {
	Allowed bool
	// Outcome is the core's: Undecided only for want of a signature
	// answer or of any network (the container is not touched, the failure
	// is reported); content whose provenance no registry answered for is
	// denied to a container (evidence.Running).
	Outcome policy.Outcome
	// Decision is the allowing decision, or the denial (or the undecided
	// name's decision) that explains best why the container may not exist.
	Decision policy.Decision
	// Err says why an undecided verdict could not be decided.
	Err error
}

// judgeContainer decides whether a container may exist: whether its image
// may stay and run (policy.Judge, evidence.Running). typed is the image as
// the user gave it, img the container's image (nil when it is gone); the
// names it is judged by are policy.ContainerNames'. ps answers what names
// cannot prove (nil: nothing is asked).
func judgeContainer(typed, imageID string, img *Image, p *policy.Policy, now time.Time, ps *evidence.Pass) verdict {
	var own []string
	if img != nil {
		own = imageNames(p, *img)
	}
	names := p.ContainerNames(policy.Container{Typed: typed, ImageID: imageID, Names: own})
	v := evidence.Running(judgeNames(ps, p, names, img, now))
	out := verdict{Allowed: v.Outcome == policy.Allowed, Outcome: v.Outcome, Decision: v.Decision, Err: evidence.Failure(v)}
	if len(names) == 0 {
		out.Decision.Input = typed
		if typed == "" {
			out.Decision.Input = imageID
		}
	}
	return out
}

// contentDigest is the manifest (or index) digest of img's content where
// dockerd's image ID is one: on the containerd image store, where the ID is
// the image records' target. Tags are judged with it, so that a signature
// is verified on the content even when the repository digests dockerd
// made up were set aside (provenance.go). dockerd's own store's ID is the
// config digest: no digest there.
func contentDigest(img Image) string {
	if img.InContainerd {
		return img.ID
	}
	return ""
}

// looksLikeID reports whether s is a full image ID, bare or sha256:-prefixed.
func looksLikeID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	return len(s) == 64 && isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fullID puts the algorithm in front of a bare full image ID.
func fullID(id string) string {
	if looksLikeID(id) && !strings.HasPrefix(id, "sha256:") {
		return "sha256:" + id
	}
	return id
}

// containerRunning reports whether a container in state has (or is about to
// have) processes: what running: keep protects.
func containerRunning(state string) bool {
	switch state {
	case "running", "paused", "restarting":
		return true
	}
	return false
}
