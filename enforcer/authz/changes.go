package authz

import (
	"net/url"
	"strings"

	"github.com/distribution/reference"

	"github.com/pullguard/pullguard/policy"
)

// What a request that changes images does to the index: the names it
// adds or drops, read from the request before dockerd acts on it.

// changeOf is what req, which the plugin allowed, may do to the image
// store; ok is false for a request that changes no image.
func (s *Server) changeOf(req *Request) (c change, ok bool) {
	if !changesImages(req.RequestMethod, req.RequestURI) {
		return change{}, false
	}
	if strings.EqualFold(req.RequestMethod, "DELETE") {
		return removalOf(req.RequestURI), true
	}
	t, err := route(req.RequestMethod, req.RequestURI)
	if err != nil {
		return change{}, true
	}
	switch t.endpoint {
	case imagesTag:
		repo, tag, err := readTag(req, t)
		if err != nil {
			return change{}, true
		}
		r, err := newTagName(repo, tag)
		if err != nil {
			return change{}, true
		}
		return change{kind: changeTag, name: r, familiar: familiar(r), image: s.index.imageID(t.name)}, true
	case imagesCreate:
		q, err := readImagesCreate(req, t)
		if err != nil || q.image == "" {
			return change{}, true // an import, or unreadable
		}
		ref, err := pullRef(q.image, q.tag)
		if err != nil {
			return change{}, true
		}
		r, err := policy.ParseRef(reference.TagNameOnly(ref).String())
		if err != nil {
			return change{}, true
		}
		return change{kind: changeRepo, name: r}, true
	}
	return change{}, true
}

// newTagName is tagName's answer parsed, through the policy's cache of
// parsed references where it can be (the judgement parsed it already).
func newTagName(repo, tag string) (policy.Ref, error) {
	if r, err := policy.ParseRef(repo); err == nil && (tag != "" || r.Digest == "") {
		if tag == "" {
			return r, nil // :latest when repo names no tag
		}
		return policy.ParseRef(r.Name + ":" + tag)
	}
	full, err := tagName(repo, tag)
	if err != nil {
		return policy.Ref{}, err
	}
	return policy.ParseRef(full)
}

// familiar is r as Docker lists it (RepoTags): without docker.io/ and
// library/.
func familiar(r policy.Ref) string {
	if r.Domain != "docker.io" {
		return r.String
	}
	s := strings.TrimPrefix(r.String, "docker.io/")
	if rest, ok := strings.CutPrefix(s, "library/"); ok && !strings.Contains(r.Path[len("library/"):], "/") {
		return rest
	}
	return s
}

// removalOf is what DELETE /images/{name} removes; anything else under
// DELETE (a plugin) changes the store in ways not followed.
func removalOf(uri string) change {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return change{}
	}
	name, ok := strings.CutPrefix(stripVersion(u.Path), "/images/")
	if !ok || name == "" {
		return change{}
	}
	c := change{kind: changeRemove, typed: name}
	if r, err := policy.ParseRef(name); err == nil {
		c.name = r
	}
	return c
}

// changesImages reports whether a request can change which names the
// local images have: anything but a read on the image, build, commit and
// BuildKit endpoints.
func changesImages(method, uri string) bool {
	if method == "GET" || method == "HEAD" {
		return false
	}
	p := uri
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	p = stripVersion(p)
	for _, prefix := range []string{"/images", "/build", "/commit", "/grpc", "/session", "/plugins"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
