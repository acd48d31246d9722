package docker

import (
	"fmt"
	"strings"
	"time"

	"github.com/pullguard/pullguard/enforcer"
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

func parseImageName(raw string, digest bool) imageName {
	n := imageName{raw: raw, repo: raw, norm: raw, digest: digest}
	if r, err := policy.ParseRef(raw); err == nil {
		n.repo, n.norm = r.Name, r.String
	}
	return n
}

// namesOf lists an image's names: tags first, then digest references.
// Docker's placeholders for "no name" are dropped.
func namesOf(img Image) []imageName {
	names := make([]imageName, 0, len(img.RepoTags)+len(img.RepoDigests))
	for _, t := range img.RepoTags {
		if t != "" && t != "<none>:<none>" {
			names = append(names, parseImageName(t, false))
		}
	}
	for _, d := range img.RepoDigests {
		if d != "" && d != "<none>@<none>" {
			names = append(names, parseImageName(d, true))
		}
	}
	return names
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
}

// planImage decides which of img's names go. Every tag is judged on its own.
// A digest reference is judged on its own only when its repository has no
// tag on the image: otherwise it records where a tag was pulled from, and
// Docker removes it together with the repository's last tag. A tag whose
// removal would take an allowed digest reference with it stays (Blocked).
//
// only, when set, restricts the removals to that one name (an event's
// reference); the rest of the image's names are still taken into account.
// An image without names (dangling) gets an empty plan.
func planImage(img Image, p *policy.Policy, now time.Time, only string) imagePlan {
	plan := imagePlan{Image: img}
	names := namesOf(img)
	if len(names) == 0 {
		return plan
	}
	onlyNorm := ""
	if only != "" {
		onlyNorm = normalize(only)
	}

	tagged := map[string]int{} // repository -> number of its tags on the image
	for _, n := range names {
		if !n.digest {
			tagged[n.repo]++
		}
	}

	raws := make([]string, len(names))
	for i, n := range names {
		raws[i] = n.raw
	}
	// The candidates: denied tags, and denied digests of untagged repositories.
	var cands []int
	decisions := make([]policy.Decision, len(names))
	for i, n := range names {
		if n.digest && tagged[n.repo] > 0 {
			continue
		}
		if onlyNorm != "" && n.norm != onlyNorm {
			continue
		}
		decisions[i] = enforcer.DecideName(p, now, n.raw, raws)
		if !decisions[i].Allowed {
			cands = append(cands, i)
		}
	}
	if len(cands) == 0 {
		return plan
	}

	// Docker drops a repository's digest references with its last tag. Where
	// that would take an allowed digest reference, the first of the
	// repository's doomed tags stays.
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
		for _, d := range names {
			if d.digest && d.repo == repo && p.Decide(d.raw, now).Allowed {
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
	// Decision is the allowing decision, or the denial that explains best
	// why the container may not exist.
	Decision policy.Decision
}

// judgeContainer decides whether a container may exist. typed is the image
// as the user gave it, img the container's image (nil when it is gone). The
// container is allowed when any of the image's names is allowed, or the
// typed reference is (a name that has since moved to a newer image). An
// ID, short or full, is not a name and proves nothing; an image without
// names is decided by the policy's default.
func judgeContainer(typed, imageID string, img *Image, p *policy.Policy, now time.Time) verdict {
	var names []string
	if img != nil {
		for _, n := range namesOf(*img) {
			names = append(names, n.raw)
		}
	}
	cands := names
	if typed != "" && !isIDOf(typed, imageID) {
		cands = append([]string{typed}, names...)
	}
	var denial *policy.Decision
	for _, c := range cands {
		d := enforcer.DecideName(p, now, c, names)
		if d.Allowed {
			return verdict{Allowed: true, Decision: d}
		}
		if denial == nil {
			denial = &d
		}
	}
	if denial != nil {
		return verdict{Decision: *denial}
	}
	input := typed
	if input == "" {
		input = imageID
	}
	if p.Default == policy.DefaultAllow {
		return verdict{Allowed: true, Decision: policy.Decision{Input: input, Allowed: true,
			Reason: "the image has no name to judge; the default is allow"}}
	}
	return verdict{Decision: policy.Decision{Input: input,
		Reason: "the image has no name to judge (it was given by ID, or its names are gone); the default is deny"}}
}

// isIDOf reports whether s is image ID id or a prefix of it (a short ID),
// with or without the algorithm. Docker resolves such input by ID, so it is
// not a name the policy could judge.
func isIDOf(s, id string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	id = strings.TrimPrefix(id, "sha256:")
	if s == "" || id == "" || !isHex(s) {
		return false
	}
	return strings.HasPrefix(id, s)
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
