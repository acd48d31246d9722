// Package registry is pullguard's access to image registries: resolving a
// tag to the manifest digest a pull would fetch, asking whether a manifest
// exists, and the transport options signature verification uses. It
// behaves like the docker CLI where that matters to an operator:
// credentials come from Docker's config.json (and its credential helpers),
// and plain HTTP is used only for loopback registries (127.0.0.0/8, ::1,
// localhost), which Docker treats as insecure by default. Every call has a
// deadline.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultTimeout bounds one registry operation (which may be a few HTTP
// requests: ping, token, manifest). The authorization plugin and the image
// verifier wait for it, and containerd kills a verifier after 10 s.
const DefaultTimeout = 5 * time.Second

// Client talks to registries. It is safe for concurrent use.
type Client struct {
	timeout   time.Duration
	keychain  authn.Keychain
	transport http.RoundTripper
}

// Options tune a Client; the zero value is Docker's behaviour.
type Options struct {
	// Timeout bounds each operation; 0 means DefaultTimeout.
	Timeout time.Duration
	// Keychain supplies credentials; nil means Docker's config.json, found
	// the way the docker CLI finds it ($DOCKER_CONFIG, then ~/.docker).
	Keychain authn.Keychain
	// QPS paces requests to each registry host (ratelimit.go), with
	// bursts of Burst; 0 is no limit.
	QPS   float64
	Burst int
}

// New returns a client.
func New(o Options) *Client { return newClient(o, nil) }

// newClient returns a client that resolves registry hosts with resolver
// (nil: the system's, as net.Dialer does).
func newClient(o Options, resolver *net.Resolver) *Client {
	c := &Client{timeout: o.Timeout, keychain: o.Keychain}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.keychain == nil {
		c.keychain = authn.DefaultKeychain
	}
	base := remote.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = (&net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second, Resolver: resolver}).DialContext
	base.ResponseHeaderTimeout = c.timeout
	c.transport = loopbackOnlyHTTP{limitPerHost(base, o.QPS, o.Burst)}
	return c
}

// Timeout is the deadline of one operation.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Reference parses an image reference for go-containerregistry, marking
// loopback registries insecure (plain HTTP allowed) as Docker does.
func (c *Client) Reference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if IsLoopback(r.Context().RegistryStr()) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// Digest parses "repository@sha256:…" the same way.
func (c *Client) Digest(repository, digest string) (name.Digest, error) {
	r, err := c.Reference(repository + "@" + digest)
	if err != nil {
		return name.Digest{}, err
	}
	d, ok := r.(name.Digest)
	if !ok {
		return name.Digest{}, fmt.Errorf("%s@%s is not a digest reference", repository, digest)
	}
	return d, nil
}

// Options returns go-containerregistry options for one operation bound by
// ctx: credentials, the transport, the context.
func (c *Client) Options(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.transport),
		remote.WithUserAgent("pullguard"),
		// One quick retry: the caller's deadline, not ggcr's default
		// backoff of seconds, decides how long a bad registry is waited for.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}
}

// Resolve returns the manifest digest ref names at the registry now: the
// digest a pull of ref would fetch (for a multi-platform image, the index
// digest, which is what Docker records as the repository digest). A
// reference that carries a digest resolves to it without a request.
func (c *Client) Resolve(ctx context.Context, ref string) (string, error) {
	r, err := c.Reference(ref)
	if err != nil {
		return "", err
	}
	if d, ok := r.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	desc, err := remote.Head(r, c.Options(ctx)...)
	if err != nil {
		return "", fmt.Errorf("resolving %s at the registry: %w", ref, err)
	}
	return desc.Digest.String(), nil
}

// HasManifest asks whether repository holds the manifest digest (HEAD by
// digest). It returns false with a nil error only on a definite "not
// found": the registry's, or DNS's answer that its host does not exist
// (NoSuchHost); any other failure is an error.
func (c *Client) HasManifest(ctx context.Context, repository, digest string) (bool, error) {
	d, err := c.Digest(repository, digest)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := remote.Head(d, c.Options(ctx)...); err != nil {
		if IsNotFound(err) || NoSuchHost(err) {
			return false, nil
		}
		return false, fmt.Errorf("looking up %s at the registry: %w", d, err)
	}
	return true, nil
}

// IsNotFound reports a definite "no such manifest" from the registry, as
// opposed to a failure to ask.
func IsNotFound(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		if terr.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range terr.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// NoSuchHost reports DNS's definite answer that a registry's host does not
// exist (NXDOMAIN, or a name with no address): no registry there serves
// anything. A name anyone may make up under an allowed host glob
// (ghost.anything.mirror.example.net) is not a registry that failed to
// answer, which would leave its content undecided for as long as nobody
// answers. A DNS server that fails or does not answer (SERVFAIL, a
// timeout) is no answer, and stays an error.
func NoSuchHost(err error) bool {
	var derr *net.DNSError
	return errors.As(err, &derr) && derr.IsNotFound && !derr.IsTimeout && !derr.IsTemporary
}

// Unreachable describes why a registry error is not a definite answer, in
// a few words for reasons: "connection refused", "timed out", "HTTP 503".
func Unreachable(err error) string {
	var terr *transport.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT):
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &terr):
		return fmt.Sprintf("HTTP %d", terr.StatusCode)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return "timed out"
	}
	return err.Error()
}

// IsLoopback reports whether a registry host[:port] is on the loopback
// network, where Docker allows plain HTTP without configuration.
func IsLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnlyHTTP refuses plain-HTTP requests to anything but loopback.
// go-containerregistry falls back to HTTP for private (RFC 1918) addresses
// too; Docker does not without an insecure-registries entry, and neither
// does pullguard: credentials are not sent in the clear.
type loopbackOnlyHTTP struct{ next http.RoundTripper }

func (t loopbackOnlyHTTP) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !IsLoopback(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: only loopback registries are reached without TLS", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}
