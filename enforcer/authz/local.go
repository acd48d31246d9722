package authz

import (
	"fmt"
	"slices"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// Content made on the host, and plugins (issue 12).
//
// Under local-images: deny, a request that makes an image on the host from
// anything but a pull is refused whatever it names: its content came from
// no repository, so no name it carries is allowed (policy/provenance.go).
// These are POST /images/create?fromSrc= (import), POST /commit, POST
// /build and POST /grpc (BuildKit's API, which docker buildx uses on the
// docker driver). docker load (POST /images/load) is not among them: its
// names are inside the tarball body, which dockerd does not forward, so
// the event guard judges what a load brought.
//
// Plugins are images that Docker runs as root: a plugin's remote and its
// local name are judged as image references, under either setting.

// localContent refuses a request that makes an image on the host.
func localContent(req *Request, t target) verdict {
	d := policy.Decision{Input: req.RequestMethod + " " + t.path,
		Reason: "it makes an image on this host, whose content did not come from an allowed repository (local-images: deny)"}
	return verdict{decision: d, msg: d.Err().Error()}
}

func localDenied(p *policy.Policy) bool { return p.LocalImages == policy.LocalImagesDeny }

// judgeCommit judges POST /commit?container=&repo=&tag=: refused under
// local-images: deny; otherwise the name it gives is judged, as dockerd
// 20.10's RepoTagReference makes it.
func (s *Server) judgeCommit(p *policy.Policy, now time.Time, req *Request, t target) verdict {
	if localDenied(p) {
		return localContent(req, t)
	}
	repo, tag, err := readTag(req, t) // commit names its image as tag does
	if err != nil {
		return refuse(req, t, err)
	}
	if repo == "" {
		return allowed // a nameless image: running it is judged by its lack of names
	}
	name, err := tagName(repo, tag)
	if err != nil {
		return denied(p, invalid(joinTag(repo, tag), err))
	}
	return decided(p, p.Decide(name, now))
}

// judgePlugin judges POST /plugins/pull (remote= and name=), POST
// /plugins/{name}/upgrade (remote=) and POST /plugins/create (name=).
// The privileges a pull or an upgrade sends are JSON, which dockerd
// forwards; create's body is the plugin's root file system, which it does
// not, and which can only hold content (a form body in its place leaves
// dockerd nothing to create the plugin from).
func (s *Server) judgePlugin(p *policy.Policy, now time.Time, req *Request, t target) verdict {
	if t.endpoint == pluginCreate && localDenied(p) {
		return localContent(req, t)
	}
	if t.endpoint != pluginCreate && requestBody(req) == bodyWithheld {
		return refuse(req, t, errBodyWithheld)
	}
	f := t.query
	if t.endpoint != pluginCreate {
		var err error
		if f, err = requestForm(req, t); err != nil {
			return refuse(req, t, err)
		}
	}
	keys := map[endpoint][]string{pluginPull: {"remote", "name"}, pluginUpgrade: {"remote"}, pluginCreate: {"name"}}[t.endpoint]
	var refs []string
	for _, k := range keys {
		v, err := single(f, k)
		if err != nil {
			return refuse(req, t, err)
		}
		if v != "" {
			refs = append(refs, v)
		}
	}
	if len(refs) == 0 {
		return refuse(req, t, fmt.Errorf("it names no plugin"))
	}
	return judgePluginRefs(p, now, refs)
}

// judgePluginRefs judges the references a plugin is installed from and
// named as (policy.DecidePlugin); empty ones are skipped.
func judgePluginRefs(p *policy.Policy, now time.Time, refs []string) verdict {
	if !slices.ContainsFunc(refs, func(r string) bool { return r != "" }) {
		return allowed
	}
	v := decided(p, p.DecidePlugin(refs, now))
	if !v.allowed {
		v.msg = "plugin " + v.msg
	}
	return v
}
