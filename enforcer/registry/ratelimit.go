package registry

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/time/rate"
)

// The daemon's default pace of requests to one registry host (pullguard
// daemon --registry-qps, --registry-burst): up to DefaultBurst at once,
// then DefaultQPS a second. A host that starts with a thousand images
// whose provenance or signatures it must ask about (two or three requests
// each: the API check, a token, the manifest) spreads them over a minute
// or two instead of sending them in one burst, so a fleet restarted
// together reaches its registry at most hosts × DefaultQPS requests a
// second; verdicts kept across a restart (enforcer/evidence) spare most
// of them. Interactive questions (a pull the authorization plugin judges)
// fit in the burst.
const (
	DefaultQPS   = 20
	DefaultBurst = 40
)

// maxLimitedHosts bounds the limiters kept: registries a policy names.
const maxLimitedHosts = 1024

// perHostLimit is a RoundTripper that paces requests to each registry
// host with a token bucket. A request waits for its turn no longer than
// its context allows (the operation's deadline within one reconcile,
// event or request): one that would have to wait past it fails at once,
// as a timeout, and is asked again later.
type perHostLimit struct {
	next  http.RoundTripper
	qps   rate.Limit
	burst int

	mu    sync.Mutex
	hosts map[string]*rate.Limiter
}

// limitPerHost paces next at qps requests a second to each host, bursts
// of burst; qps <= 0 is no limit.
func limitPerHost(next http.RoundTripper, qps float64, burst int) http.RoundTripper {
	if qps <= 0 {
		return next
	}
	if burst < 1 {
		burst = 1
	}
	return &perHostLimit{next: next, qps: rate.Limit(qps), burst: burst, hosts: map[string]*rate.Limiter{}}
}

func (l *perHostLimit) limiter(host string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.hosts[host]
	if !ok {
		if len(l.hosts) >= maxLimitedHosts {
			clear(l.hosts)
		}
		lim = rate.NewLimiter(l.qps, l.burst)
		l.hosts[host] = lim
	}
	return lim
}

func (l *perHostLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := l.limiter(req.URL.Host).Wait(ctx); err != nil {
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded // the wait would outlast the deadline
		}
		return nil, fmt.Errorf("no turn to ask %s in time (at most %g requests a second to one registry): %w", req.URL.Host, float64(l.qps), cause)
	}
	return l.next.RoundTrip(req)
}
