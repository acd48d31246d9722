package authz

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// endpoint is an API operation that pullguard judges. Everything else is
// otherEndpoint and is allowed without looking at the policy.
type endpoint int

const (
	otherEndpoint    endpoint = iota
	imagesCreate              // POST /images/create: a pull (fromImage) or an import (fromSrc)
	containersCreate          // POST /containers/create: the image to run is in the JSON body
	imagesTag                 // POST /images/{name}/tag
	build                     // POST /build
	commit                    // POST /commit: a container's file system made an image
	grpc                      // POST /grpc: BuildKit's own API (docker buildx on the docker driver)
	pluginPull                // POST /plugins/pull: install a plugin (remote=, name=)
	pluginUpgrade             // POST /plugins/{name}/upgrade: replace a plugin's content (remote=)
	pluginCreate              // POST /plugins/create: a plugin made from a local root file system
	servicesCreate            // POST /services/create: a swarm service; its image is in the JSON body
	servicesUpdate            // POST /services/{id}/update: the same, replacing a service's spec
)

func (e endpoint) String() string {
	switch e {
	case imagesCreate:
		return "images/create"
	case containersCreate:
		return "containers/create"
	case imagesTag:
		return "images/tag"
	case build:
		return "build"
	case commit:
		return "commit"
	case grpc:
		return "grpc"
	case pluginPull:
		return "plugins/pull"
	case pluginUpgrade:
		return "plugins/upgrade"
	case pluginCreate:
		return "plugins/create"
	case servicesCreate:
		return "services/create"
	case servicesUpdate:
		return "services/update"
	}
	return "other"
}

// target is a judged request's endpoint and what its URI holds.
type target struct {
	endpoint endpoint
	// path is the decoded and cleaned path, version prefix included.
	path  string
	query url.Values
	// name is the {name} of POST /images/{name}/tag and of POST
	// /plugins/{name}/upgrade.
	name string
}

// route finds what a request does, the way dockerd's router would: on the
// decoded path (gorilla/mux matches r.URL.Path), with or without a
// /v{version} prefix. Only POSTs are parsed at all, so that the many
// GETs a Docker host serves cost nothing. An error means a judged request
// that cannot be read, which is refused.
func route(method, uri string) (target, error) {
	// Method names are case-sensitive to dockerd's router; matching them
	// without case only makes pullguard look at more requests, never fewer.
	if !strings.EqualFold(method, "POST") {
		return target{}, nil
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		// dockerd itself parsed this URI, so this does not happen; if it
		// does, there is no telling what the request does.
		return target{path: uri}, fmt.Errorf("its URI cannot be parsed: %w", err)
	}
	// dockerd redirects a path that is not clean instead of serving it;
	// judging the cleaned path can only judge more.
	p := path.Clean("/" + u.Path)
	rest := stripVersion(p)
	t := target{path: p}
	if e, ok := exactRoutes[rest]; ok {
		t.endpoint = e
	} else if name, ok := between(rest, "/images/", "/tag"); ok {
		t.endpoint, t.name = imagesTag, name
	} else if name, ok := between(rest, "/plugins/", "/upgrade"); ok {
		t.endpoint, t.name = pluginUpgrade, name
	} else if _, ok := between(rest, "/services/", "/update"); ok {
		t.endpoint = servicesUpdate
	} else {
		return target{}, nil
	}
	// Go's form parser, which dockerd uses, fails on a malformed query
	// (a stray % or a ;) and dockerd then refuses the request; older
	// parsers split at ; instead. Refuse it here either way.
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return t, fmt.Errorf("its query string is malformed: %w", err)
	}
	t.query = q
	return t, nil
}

// stripVersion removes dockerd's optional /v{version:[0-9.]+} prefix.
func stripVersion(p string) string {
	if !strings.HasPrefix(p, "/v") {
		return p
	}
	i := 2
	for i < len(p) && (p[i] >= '0' && p[i] <= '9' || p[i] == '.') {
		i++
	}
	if i == 2 || i == len(p) || p[i] != '/' {
		return p
	}
	return p[i:]
}

// bodyState says what pullguard knows about a request's body.
type bodyState int

const (
	// bodyNone: the request says it has no body (Content-Length: 0).
	bodyNone bodyState = iota
	// bodyForwarded: dockerd forwarded the body.
	bodyForwarded
	// bodyWithheld: there is, or may be, a body that dockerd did not
	// forward. dockerd forwards only application/json bodies under 1 MiB
	// (and, before CVE-2024-41110 was fixed, not chunked ones); it drops
	// Transfer-Encoding from the headers it passes on, so a missing
	// Content-Length may mean a chunked body.
	bodyWithheld
)

func requestBody(req *Request) bodyState {
	if len(req.RequestBody) > 0 {
		return bodyForwarded
	}
	if v, ok := header(req.RequestHeaders, "Content-Length"); ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n == 0 {
			return bodyNone
		}
	}
	return bodyWithheld
}

// header looks a header up without regard to case; dockerd sends Go's
// canonical names, but nothing requires it to.
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// errBodyWithheld explains the refusal of a judged request whose body
// pullguard could not see. dockerd reads parameters from a urlencoded body
// before the query's, so such a body could change what is pulled.
var errBodyWithheld = errors.New("it may carry a body that Docker did not forward to the authorization plugin " +
	"(Docker forwards only application/json bodies under 1 MiB; a request without a body must send Content-Length: 0), " +
	"so what it asks for cannot be checked")

// requestForm is what dockerd's form parser (Go's Request.ParseForm) would
// see: the body's urlencoded values first, then the query's. The plugin
// sees only the last Content-Type header while Go's parser reads the first,
// so a forwarded body is read as a form whatever its Content-Type says; a
// body that does not parse as one is refused, as dockerd would refuse it.
func requestForm(req *Request, t target) (url.Values, error) {
	if len(req.RequestBody) == 0 {
		return t.query, nil
	}
	body, err := url.ParseQuery(string(req.RequestBody))
	if err != nil {
		return nil, fmt.Errorf("its body does not parse as a form: %w", err)
	}
	for k, vs := range t.query {
		body[k] = append(body[k], vs...)
	}
	return body, nil
}

// single returns a parameter that must appear at most once. dockerd reads
// only the first value of these; a request that repeats one is ambiguous
// to anyone reading it, and no Docker client sends one.
func single(f url.Values, key string) (string, error) {
	vs := f[key]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", fmt.Errorf("it gives the parameter %s %d times", key, len(vs))
}

// exactRoutes are the judged endpoints whose path has no parameter.
var exactRoutes = map[string]endpoint{
	"/images/create":     imagesCreate,
	"/containers/create": containersCreate,
	"/build":             build,
	"/commit":            commit,
	"/grpc":              grpc,
	"/plugins/pull":      pluginPull,
	"/plugins/create":    pluginCreate,
	"/services/create":   servicesCreate,
}

// between returns the non-empty part of s between prefix and suffix: the
// {name} of /images/{name}/tag.
func between(s, prefix, suffix string) (string, bool) {
	if len(s) <= len(prefix)+len(suffix) || !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		return "", false
	}
	return s[len(prefix) : len(s)-len(suffix)], true
}
