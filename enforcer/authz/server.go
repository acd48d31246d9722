// Package authz is pullguard's Docker authorization plugin. dockerd started
// with --authorization-plugin=NAME asks the plugin about every API request
// before serving it, so a disallowed pull, run, tag or build is refused
// before it takes effect, instead of being undone after the event.
//
// Only four endpoints are judged: POST /images/create (pull and import),
// POST /containers/create, POST /images/{name}/tag and POST /build, with or
// without a /v{version} prefix. Every other request is allowed at once,
// without reading the policy.
package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

const (
	// maxPluginRequest bounds what is read of one plugin call: dockerd
	// forwards bodies under 1 MiB (4/3 of that in base64), plus headers.
	maxPluginRequest = 8 << 20
	// resolveTimeout bounds an image lookup; dockerd gives up on a plugin
	// call after 30 s, and a refusal that says why is better than that.
	resolveTimeout = 10 * time.Second
	// shutdownTimeout is how long in-flight calls get to finish on stop.
	shutdownTimeout = 5 * time.Second
)

// Server answers dockerd's authorization plugin calls. It is safe for
// concurrent use: dockerd calls it for every API request it serves,
// pullguard's own image lookups included, so calls are never serialized.
type Server struct {
	policies enforcer.PolicySource
	images   ImageResolver
	rep      enforcer.Reporter
	log      logrus.FieldLogger
	now      func() time.Time
	handler  http.Handler
	index    imageIndex
	observe  func(verdict string, took time.Duration)
	// signatures, when set, verifies what signed-by rules ask of a pull.
	signatures Signatures
	// judge answers what a local image's names cannot prove (its
	// signatures, where its content came from); nil: nothing is asked.
	evidence *evidence.Judge
}

// Signatures verifies what signed-by rules ask of a pull (enforcer/signature's
// Verifier), by the digest its tag resolves to at the registry.
type Signatures interface {
	// Decide judges ref as a pull would fetch it: a tag is resolved at the
	// registry, and the digest's signatures are verified.
	Decide(ctx context.Context, p *policy.Policy, ref string, now time.Time) policy.Decision
}

// Verdicts, as WithRequestObserver's callback receives them.
const (
	VerdictAllowed = "allowed"
	VerdictBlocked = "blocked"
	// VerdictError: the call could not be read, and was refused.
	VerdictError = "error"
)

// Option configures a Server.
type Option func(*Server)

// WithEvidence has the plugin ask j what a local image's names cannot
// prove before a container is created from it or it is tagged: its
// signatures, and on dockerd's containerd image store under local-images:
// deny where its content came from (shared with the guards). A question
// without an answer refuses the request.
func WithEvidence(j *evidence.Judge) Option { return func(s *Server) { s.evidence = j } }

// WithRequestObserver has the plugin tell observe how it answered each
// AuthZReq call and how long that took (for metrics). observe must not
// block.
func WithRequestObserver(observe func(verdict string, took time.Duration)) Option {
	return func(s *Server) { s.observe = observe }
}

// WithSignatures has the plugin verify the signatures signed-by rules ask
// of a pull; without it such rules refuse every pull of what they name.
func WithSignatures(sg Signatures) Option { return func(s *Server) { s.signatures = sg } }

// New returns a plugin server that judges requests against the policy
// in force (read per request, so a reload takes effect at once), looks
// images up with images and reports every refusal, or audit mode's
// would-be refusal, to rep.
func New(policies enforcer.PolicySource, images ImageResolver, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Server {
	s := &Server{policies: policies, images: images, rep: rep, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.handler = http.HandlerFunc(s.serveCall)
	return s
}

// serveCall routes a plugin call: three POST endpoints.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request) {
	var h func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case pathAuthZReq:
		h = s.authzReq
	case pathAuthZRes:
		h = s.authzRes
	case pathActivate:
		h = s.activate
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h(w, r)
}

// Handler is the plugin's HTTP handler, for callers that run their own
// http.Server (and for tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers plugin calls on l until ctx is done, then stops accepting,
// lets calls in flight finish (for up to 5 s) and closes l. It returns nil
// after a stop and an error if l fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Calls in flight at shutdown keep their context, so an image
		// lookup is not cut short into a refusal.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("authorization plugin on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.WithError(err).WithField("addr", l.Addr().String()).Warn("authorization plugin: calls still running at shutdown were cut off")
		srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// ErrSocketInUse is returned by Listen when another process answers on the
// socket path: two plugins on one path would take turns answering dockerd.
var ErrSocketInUse = errors.New("another process is listening on the socket")

// Listen opens the plugin's unix socket at path, creating its directory and
// replacing a socket file that nothing listens on any more (what a crash
// leaves behind). The socket is mode 0660: only dockerd (root) has any
// business there. dockerd finds the plugin at
// /run/docker/plugins/NAME.sock, or through a spec file in
// /etc/docker/plugins/NAME.spec holding unix:///path/to.sock.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("authorization plugin socket: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("authorization plugin socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("authorization plugin socket: %w", err)
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("authorization plugin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("authorization plugin socket: %s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("authorization plugin socket %s: %w", path, ErrSocketInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("authorization plugin socket: removing stale %s: %w", path, err)
	}
	return nil
}

// ListenersFromSystemd returns the sockets systemd passed to the process
// (socket activation: LISTEN_FDS), or none when it was started without.
// With a pullguard.socket unit, systemd holds the plugin socket while
// pullguard restarts, so dockerd's calls wait instead of failing.
func ListenersFromSystemd() ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	out := ls[:0]
	for _, l := range ls {
		if l != nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 && len(ls) > 0 {
		return nil, fmt.Errorf("socket activation: none of the %d sockets passed by systemd is a stream socket", len(ls))
	}
	return out, nil
}

func (s *Server) activate(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, activateResponse{Implements: []string{implementsAuthZ}})
}

// authzRes allows every response: pullguard judges requests only. Of a
// request that may have changed the image store, it tells the image index
// that dockerd is done with it (and, for a tag, whether it succeeded);
// anything else is answered from the request line alone, without decoding
// the response body that follows it.
func (s *Server) authzRes(w http.ResponseWriter, r *http.Request) {
	buf, err := readCall(w, r)
	defer putBuffer(buf)
	if err == nil {
		if method, uri, ok := requestLine(buf.Bytes()); ok && !changesImages(method, uri) {
			writeAllow(w)
			return
		}
	}
	// Of the rest, only the status is needed, not the headers and bodies.
	var res struct {
		RequestMethod      string
		RequestURI         string `json:"RequestUri"`
		ResponseStatusCode int
	}
	if err != nil || json.Unmarshal(buf.Bytes(), &res) != nil {
		// Nothing tells what happened: the store may have changed.
		s.index.forget()
	} else if changesImages(res.RequestMethod, res.RequestURI) {
		ok := res.ResponseStatusCode >= 200 && res.ResponseStatusCode < 300
		s.index.end(res.RequestMethod+" "+res.RequestURI, ok, s.now())
	}
	writeAllow(w)
}

func (s *Server) authzReq(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	buf, err := readCall(w, r)
	defer putBuffer(buf)
	if err == nil {
		// Most requests a Docker host serves are not judged: answer them
		// from the request line, before decoding headers and body.
		if method, uri, ok := requestLine(buf.Bytes()); ok && unjudged(method, uri) {
			writeAllow(w)
			s.observed(VerdictAllowed, start)
			return
		}
	}
	var req Request
	if err == nil {
		err = json.Unmarshal(buf.Bytes(), &req)
	}
	if err != nil {
		// Not something dockerd sends; with no idea what the request is,
		// it is refused.
		s.log.WithError(err).Error("authorization plugin: unreadable AuthZReq call; refusing it")
		writeJSON(w, Response{Msg: "pullguard: unreadable authorization request", Err: err.Error()})
		s.observed(VerdictError, start)
		return
	}
	resp := s.authorize(r.Context(), &req)
	if resp.Allow {
		// dockerd makes the change once this answer reaches it.
		if c, ok := s.changeOf(&req); ok {
			s.index.begin(req.RequestMethod+" "+req.RequestURI, c, s.now())
		}
	}
	writeJSON(w, resp)
	if resp.Allow {
		s.observed(VerdictAllowed, start)
	} else {
		s.observed(VerdictBlocked, start)
	}
}

// unjudged reports whether a request is allowed without judging and
// changes no image: it needs nothing but an answer.
func unjudged(method, uri string) bool {
	if changesImages(method, uri) {
		return false
	}
	t, err := route(method, uri)
	return err == nil && t.endpoint == otherEndpoint
}

var callBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readCall reads a plugin call's body, up to maxPluginRequest, into a
// pooled buffer; putBuffer returns it.
func readCall(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, error) {
	buf := callBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 && r.ContentLength <= maxPluginRequest {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxPluginRequest))
	return buf, err
}

// maxPooledBuffer keeps a call with a large response body (an image list)
// from pinning its buffer in the pool.
const maxPooledBuffer = 64 << 10

func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBuffer {
		callBuffers.Put(buf)
	}
}

func (s *Server) observed(verdict string, start time.Time) {
	if s.observe != nil {
		s.observe(verdict, time.Since(start))
	}
}

// allowBody is Response{Allow: true} as writeJSON writes it.
var (
	allowBody         = []byte(`{"Allow":true}` + "\n")
	contentTypeHeader = []string{contentType}
)

// writeAllow answers "allowed" without encoding anything.
func writeAllow(w http.ResponseWriter) {
	w.Header()["Content-Type"] = contentTypeHeader
	_, _ = w.Write(allowBody)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	// The values are small structs of strings; encoding cannot fail, and a
	// write error means dockerd hung up, which it reports itself.
	_ = json.NewEncoder(w).Encode(v)
}
