package containerd

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Scan lists every denied image record and container in the guarded
// namespaces under p, as of now, without acting: it runs the guard's own
// reconcile with an executor that only reports what it would do, so that
// scan and the daemon cannot disagree. It is what `pullguard scan` prints
// for containerd.
func Scan(ctx context.Context, api API, p *policy.Policy, now time.Time, opts ...Option) ([]enforcer.Finding, error) {
	var mu sync.Mutex
	var out []enforcer.Finding
	rep := enforcer.ReporterFunc(func(r enforcer.Record) {
		mu.Lock()
		defer mu.Unlock()
		f := enforcer.Finding{
			Runtime: enforcer.RuntimeContainerd, Namespace: r.Namespace, Kind: enforcer.FindingImage,
			ImageID: r.ImageID, Reference: r.Image, Decision: r.Decision, Action: r.Action,
		}
		if r.ContainerID != "" {
			f.Kind, f.ContainerID = enforcer.FindingContainer, r.ContainerID
			f.Reference = r.Decision.Input
		}
		if f.Reference == "" {
			f.Reference = r.Decision.Input
		}
		if r.Err != nil {
			f.Note = r.Err.Error() // why it is left in place
		}
		out = append(out, f)
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	g := New(api, staticPolicy{p}, rep, log, append(opts, WithClock(func() time.Time { return now }))...)
	g.exec.DryRun = true
	if err := g.reconcile(ctx, "scan"); err != nil {
		return nil, err
	}
	return out, nil
}

// Reconcile brings every guarded namespace in line with the policy once,
// synchronously: what `pullguard scan --enforce` does.
func (g *Guard) Reconcile(ctx context.Context) error { return g.reconcile(ctx, "scan") }

// WithClock sets the clock decisions and records use.
func WithClock(now func() time.Time) Option { return func(g *Guard) { g.now = now } }

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current() *policy.Policy { return s.p }
