package docker

import (
	"slices"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// Nameless images. An image with neither a tag nor a repository digest — a
// `docker load` of an archive without names, an import or commit without
// a repository, a build without -t, or on Docker 29 the content a tag
// left when it moved (a dangling record) — has nothing the policy could
// allow. Under local-images: deny, where only content an allowed
// repository vouches for may stay, it does not stay: the guard removes it
// by its ID, without force, the way `docker rmi ID` does. Docker refuses
// that while a container runs it or mounts it (the container's own
// judgement decides then, and the image goes once the container has) and
// while another image is built on it, so nothing in use is touched.
// Docker 20.10 keeps a pulled image's repository digests when its tag
// moves, so pulled content that lost its tag there still has a name, and
// is judged by it. Under local-images: allow, names alone are judged and a
// nameless image is left alone, as before.

// namelessPlan is planImage's plan for an image without names: its
// removal by ID under local-images: deny (of only, when set, if only
// names the ID), by the core's verdict on an image without names.
func namelessPlan(img Image, p *policy.Policy, now time.Time, only []string) imagePlan {
	plan := imagePlan{Image: img}
	if p.LocalImages != policy.LocalImagesDeny || img.ID == "" || only != nil && !slices.Contains(only, img.ID) {
		return plan
	}
	v := judgeNames(nil, p, nil, &img, now)
	if v.Outcome != policy.Denied {
		return plan
	}
	d := v.Decision
	d.Input = img.ID
	plan.Empties = true
	plan.Removals = []removal{{Name: img.ID, Last: true, Decision: d}}
	return plan
}

// isNameless reports whether a plan removes a nameless image.
func (plan imagePlan) isNameless() bool {
	return len(plan.Removals) == 1 && plan.Removals[0].Name == plan.Image.ID
}
