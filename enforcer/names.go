package enforcer

import (
	"time"

	"github.com/pullguard/pullguard/policy"
)

// DecideName judges name, one of a Docker image's names, in the light of the
// image's other names. Docker lists a pulled image's tags (repo:tag) apart
// from the digests it was pulled by (repo@sha256:...), but the digest is
// what was fetched: a tag is judged together with every digest its
// repository has among names (repo:tag@digest), and is allowed only if all
// of those are. So a deny rule listing a digest applies to the tag, and an
// allow rule pinning a digest allows the tag that was pulled as it, as
// containerd's guard judges name:tag@target. A tag whose repository has no
// digest (tagged or built locally) is judged alone, as is a digest name.
func DecideName(p *policy.Policy, now time.Time, name string, names []string) policy.Decision {
	ref, err := policy.ParseRef(name)
	if err != nil || ref.Digest != "" || ref.Tag == "" {
		return p.Decide(name, now)
	}
	var first *policy.Decision
	for _, other := range names {
		o, err := policy.ParseRef(other)
		if err != nil || o.Digest == "" || o.Name != ref.Name {
			continue
		}
		d := p.Decide(ref.Name+":"+ref.Tag+"@"+o.Digest, now)
		d.Input = name
		if !d.Allowed {
			return d
		}
		if first == nil {
			first = &d
		}
	}
	if first == nil {
		return p.Decide(name, now)
	}
	return *first
}
