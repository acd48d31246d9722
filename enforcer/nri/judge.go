package nri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"

	"github.com/pullguard/pullguard/enforcer"
	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	"github.com/pullguard/pullguard/policy"
)

// Images is what the plugin reads of containerd's image store, to name the
// image of a container whose Image containerd left incomplete
// (enforcer/containerd's API satisfies it).
type Images interface {
	Image(ctx context.Context, ns, name string) (cdguard.Image, error)
	ImagesByTarget(ctx context.Context, ns, digest string) ([]cdguard.Image, error)
}

// image is a container's image as the plugin judges it.
type image struct {
	// shown is the name PULLGUARD_IMAGE carries: the one the container
	// was created from, else the first the content has.
	shown  string
	names  []string
	digest string
}

// errNoImage: containerd handed over a container without any image.
var errNoImage = errors.New("containerd named no image for the container")

// imageOf is the image ctr is created from: the name and digest containerd
// hands over, what is missing looked up in namespace ns. An image that
// cannot be named is an error: it cannot be judged.
func imageOf(ctx context.Context, images Images, ns string, ctr *api.Container) (image, error) {
	ci := ctr.GetImage()
	img := image{shown: ci.GetName(), digest: ci.GetDigest()}
	if img.shown != "" {
		img.names = []string{img.shown}
	}
	if img.digest == "" {
		// Look the record up by its name, else by CRI's image-ID record
		// (named by the config digest).
		key := img.shown
		if key == "" {
			key = ci.GetConfigDigest()
		}
		if key == "" {
			return img, errNoImage
		}
		if images == nil {
			return img, fmt.Errorf("containerd gave no digest for image %s, and pullguard has no containerd client to look it up", key)
		}
		rec, err := images.Image(ctx, ns, key)
		if err != nil {
			return img, lookupError(key, ns, err)
		}
		img.digest = rec.Target
	}
	if len(img.names) == 0 {
		if images == nil {
			return img, fmt.Errorf("containerd gave no name for image %s, and pullguard has no containerd client to look it up", img.digest)
		}
		recs, err := images.ImagesByTarget(ctx, ns, img.digest)
		if err != nil {
			return img, lookupError(img.digest, ns, err)
		}
		for _, r := range recs {
			img.names = append(img.names, r.Name)
		}
		if len(img.names) == 0 {
			return img, fmt.Errorf("no image record in containerd namespace %s points at %s", ns, img.digest)
		}
		img.shown = img.names[0]
	}
	return img, nil
}

func lookupError(key, ns string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s is not in containerd namespace %s", key, ns)
	}
	return fmt.Errorf("looking up image %s in containerd namespace %s: %w", key, ns, err)
}

// decision is what the plugin answers about one container, and the record
// it journals (none for an allowed one).
type decision struct {
	refuse error // nil: the container may be created
	record *enforcer.Record
}

// decide judges the container ctr under the policy in force: allowed,
// refused (denied, or undecided: no answer is no proof), or in audit mode
// journaled and let through.
func (p *Plugin) decide(ctx context.Context, ctr *api.Container) decision {
	now := p.now()
	pol := p.policies.Current()
	if pol == nil {
		// The daemon connects only once a policy is loaded.
		return decision{refuse: errors.New("pullguard: no policy is loaded; refusing the container")}
	}
	rec := enforcer.Record{
		Action:      enforcer.Blocked,
		Runtime:     enforcer.RuntimeContainerd,
		Namespace:   p.namespace,
		Event:       Event,
		Hook:        Event,
		ContainerID: ctr.GetId(),
		Mode:        pol.Mode,
		Time:        now,
	}
	img, err := imageOf(ctx, p.images, p.namespace, ctr)
	rec.Image, rec.ImageID = img.shown, img.digest
	if err != nil {
		input := img.shown
		if input == "" {
			input = "container " + ctr.GetName()
		}
		rec.Decision = policy.Decision{Input: input, Reason: "pullguard could not judge the image: " + err.Error(), PolicyHash: pol.Hash}
		return p.failed(pol, rec, err)
	}
	// containerd's records prove nothing about where content came from
	// (`ctr images import` writes any name): the core asks the registry,
	// unless the evidence cache already knows.
	v := p.judge.Pass(ctx).Judge(pol, policy.Image{Names: img.names, Digest: img.digest}, now)
	rec.Decision = v.Decision
	switch v.Outcome {
	case policy.Allowed:
		return decision{}
	case policy.Undecided:
		rec.Decision = policy.Decision{Input: img.shown, Reason: "pullguard could not decide: " + v.Err.Error(), PolicyHash: pol.Hash}
		return p.failed(pol, rec, v.Err)
	}
	if pol.Mode != policy.ModeEnforce {
		rec.Action = enforcer.Audited(enforcer.Blocked)
		return decision{record: &rec}
	}
	return decision{refuse: fmt.Errorf("pullguard: %w", v.AsError()), record: &rec}
}

// failed is a container whose image could not be judged: journaled as
// failed, and refused unless in audit mode.
func (p *Plugin) failed(pol *policy.Policy, rec enforcer.Record, err error) decision {
	rec.Action, rec.Err = enforcer.Failed, err
	if pol.Mode != policy.ModeEnforce {
		return decision{record: &rec}
	}
	why := strings.TrimPrefix(rec.Decision.Reason, "pullguard ")
	return decision{refuse: errors.New("pullguard: " + why + "; refusing the container"), record: &rec}
}

// requestBudget bounds how long one CreateContainer may wait for evidence:
// well within containerd's plugin_request_timeout (2 s by default), so that
// pullguard's own refusal, not containerd's timeout, is what the user sees.
const requestBudget = 1500 * time.Millisecond
