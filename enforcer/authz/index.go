package authz

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
)

// imageIndex remembers which local image each reference resolved to, so
// that judging POST /containers/create or /images/{name}/tag needs no
// nested Docker API call (which passes through this plugin too and costs
// a round trip through dockerd). It is correct only while nothing changes
// Docker's image store, so it is forgotten whole whenever something may
// have: every request that can add, remove or move a name (seen by this
// plugin before and after dockerd serves it), and every image event the
// Docker guard reads. A lookup that raced such a change is not kept.
type imageIndex struct {
	mu    sync.Mutex
	gen   uint64
	byRef map[string]indexEntry
}

type indexEntry struct {
	img   LocalImage
	found bool
}

// maxIndexEntries bounds the index; when full it starts over.
const maxIndexEntries = 4096

func (x *imageIndex) get(ref string) (indexEntry, uint64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.byRef[ref]
	return e, x.gen, ok
}

// put keeps a lookup's result unless the store changed since gen.
func (x *imageIndex) put(gen uint64, ref string, e indexEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gen != x.gen {
		return
	}
	if x.byRef == nil || len(x.byRef) >= maxIndexEntries {
		x.byRef = make(map[string]indexEntry)
	}
	x.byRef[ref] = e
}

// forget drops everything: the image store may have changed.
func (x *imageIndex) forget() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.byRef = nil
}

// resolve finds the local image typed means to Docker, from the index or,
// on a miss, by asking Docker.
func (s *Server) resolve(ctx context.Context, typed string) (LocalImage, bool, error) {
	e, gen, ok := s.index.get(typed)
	if ok {
		return e.img, e.found, nil
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	img, found, err := s.images.ResolveImage(rctx, typed)
	if err == nil {
		s.index.put(gen, typed, indexEntry{img: img, found: found})
	}
	return img, found, err
}

// ImagesChanged tells the plugin that Docker's image store changed (an
// image event the Docker guard read), so that it looks images up afresh.
func (s *Server) ImagesChanged() { s.index.forget() }

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

// requestLine reads RequestMethod and RequestURI from an AuthZRes call
// without decoding the response body that follows them.
func requestLine(r io.Reader) (method, uri string, ok bool) {
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		// dockerd writes RequestUri; encoding/json, which dockerd's
		// structs go through, matches keys without regard to case.
		key, _ := t.(string)
		switch {
		case strings.EqualFold(key, "RequestMethod"):
			if dec.Decode(&method) != nil {
				return "", "", false
			}
		case strings.EqualFold(key, "RequestURI"):
			if dec.Decode(&uri) != nil {
				return "", "", false
			}
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return "", "", false
			}
		}
		if method != "" && uri != "" {
			return method, uri, true
		}
	}
	return "", "", false
}
