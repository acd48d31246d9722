package authz

import (
	"context"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/policy"
)

// Image mounts (API 1.48 and later: Docker 28, 29). A container created
// with --mount type=image,source=S,target=/x gets the file system of image
// S mounted at /x: content that runs as surely as the container's own
// image does, so S is judged exactly as the container's Image is
// (judgeLocal: one verdict through the evidence, an undecided one
// refused). dockerd resolves S once, at create, with the same image
// look-up as the container's image (a name, a short or full ID, a digest),
// and never pulls it: a source Docker does not have is refused here too,
// so that a load racing the create cannot put unjudged content under a
// name judged only as a name. A swarm service's ContainerSpec.Mounts has
// the same type; swarmkit does not take image mounts today, but a spec
// that names one is judged all the same.

// mountSpec is what pullguard reads of one mount of HostConfig.Mounts or a
// service's ContainerSpec.Mounts.
type mountSpec struct {
	Type   string
	Source string
	Target string
}

// isImageMount matches the type without regard to case: dockerd 29 wants
// "image" exactly for a container, while swarm's conversion upper-cases
// whatever it is given; judging more is never wrong.
func (m mountSpec) isImageMount() bool { return strings.EqualFold(m.Type, "image") }

// judgeImageMounts judges the source of every image mount: allowed only
// if each may stay and run.
func (s *Server) judgeImageMounts(ctx context.Context, p *policy.Policy, now time.Time, mounts []mountSpec, log logrus.FieldLogger) verdict {
	for _, m := range mounts {
		if !m.isImageMount() || m.Source == "" {
			continue // dockerd refuses an image mount without a source
		}
		if v := s.judgeMountSource(ctx, p, now, m.Source, log); !v.allowed {
			v.msg = mountRefusal(m, v.msg)
			return v
		}
	}
	return allowed
}

// judgeMountSource is judgeLocal, except that an image Docker does not
// have is refused: dockerd would refuse the mount anyway, and only a
// present image can be judged by its content.
func (s *Server) judgeMountSource(ctx context.Context, p *policy.Policy, now time.Time, source string, log logrus.FieldLogger) verdict {
	if _, err := reference.ParseAnyReference(source); err != nil {
		return denied(p, invalid(source, err))
	}
	img, found, err := s.resolve(ctx, source)
	switch {
	case err != nil:
		return lookupFailed(p, source, err, log)
	case !found:
		d := policy.Decision{Input: source, Reason: "Docker has no such image to mount, so its content cannot be judged", PolicyHash: p.Hash}
		return verdict{decision: d, msg: d.Err().Error()}
	}
	return s.judgeImage(ctx, p, now, source, img, log)
}

// mountRefusal words the refusal of an image mount.
func mountRefusal(m mountSpec, why string) string {
	at := ""
	if m.Target != "" {
		at = " at " + m.Target
	}
	return "cannot mount image " + m.Source + at + ": " + why
}
