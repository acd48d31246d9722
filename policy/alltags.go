package policy

import (
	"path"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Two requests name images in a way no single reference judges: a pull of
// every tag of a repository, and a Docker plugin (pulled from one
// reference, installed under another name). Their rules live here so that
// the authorization plugin and the Docker guard share them.

// DecideAllTags judges a pull of every tag of a repository (docker pull
// -a, or fromImage without a tag). Which tags exist is known only to the
// registry, and changes, so the pull is allowed only if every tag would be:
// an allow rule without tags: or digests: (or default: allow) covers the
// repository, and no deny rule that lists tags matches any tag of it. The
// decision returned is the denial, or the repository's allowing decision.
func (p *Policy) DecideAllTags(name string, now time.Time) Decision {
	ref, err := p.ParseRef(name)
	if err != nil {
		return Decision{Input: name, Reason: "invalid reference: " + err.Error(), PolicyHash: p.Hash}
	}
	repo := ref
	repo.Tag, repo.Digest, repo.String = "", "", ref.Name
	d := p.DecideRef(repo, now)
	if !d.Allowed {
		return d
	}
	// Probe each tag glob of each deny rule with a tag it matches: if the
	// rule covers this repository, that tag is denied.
	for _, r := range p.Deny {
		for _, g := range r.Tags {
			w, ok := globWitness(g)
			if !ok {
				continue // the rule matches no tag at all
			}
			probe := repo
			probe.Tag, probe.String = w, ref.Name+":"+w
			if pd := p.DecideRef(probe, now); !pd.Allowed {
				return pd
			}
		}
	}
	return d
}

// globWitness returns a tag that the path.Match glob g matches, or false
// if no tag can match it (a class that admits no tag character). Tag globs
// are checked at load: only tag characters, *, ?, and [classes].
func globWitness(g string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
		case '?':
			b.WriteByte('a')
		case '[':
			// [, an optional ^, at least one character, then the first ].
			j := i + 1
			if j < len(g) && g[j] == '^' {
				j++
			}
			k := strings.IndexByte(g[min(j+1, len(g)):], ']')
			if k < 0 {
				return "", false
			}
			end := j + 1 + k
			found := false
			for _, ch := range tagChars {
				if ok, _ := path.Match(g[i:end+1], string(ch)); ok {
					b.WriteRune(ch)
					found = true
					break
				}
			}
			if !found {
				return "", false
			}
			i = end
		default:
			b.WriteByte(c)
		}
	}
	w := b.String()
	ok, _ := path.Match(g, w)
	return w, ok
}

const tagChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

// DecidePlugin judges a Docker plugin: the reference it is pulled from and
// the name it is installed as must both be allowed, as image references (a
// name without a tag is :latest, as Docker makes it). Empty references are
// skipped; the first denial is returned, else the last allowing decision,
// and with no reference at all a denial.
func (p *Policy) DecidePlugin(refs []string, now time.Time) Decision {
	d := Decision{Reason: "the plugin names no reference", PolicyHash: p.Hash}
	for _, r := range refs {
		if r == "" {
			continue
		}
		in := r
		if named, err := reference.ParseNormalizedNamed(r); err == nil {
			in = reference.TagNameOnly(named).String()
		}
		if d = p.Decide(in, now); !d.Allowed {
			return d
		}
	}
	return d
}
