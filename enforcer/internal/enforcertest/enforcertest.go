// Package enforcertest holds fakes of the enforcer interfaces for the
// runtime adapters' unit tests: a policy source a test can swap, and a
// reporter that keeps every record.
package enforcertest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Policies is an enforcer.PolicySource whose policy a test sets, and which
// counts how often it was asked (to prove a fast path does no policy work).
type Policies struct {
	p     atomic.Pointer[policy.Policy]
	reads atomic.Int64
}

var _ enforcer.PolicySource = (*Policies)(nil)

// NewPolicies returns a source holding p.
func NewPolicies(p *policy.Policy) *Policies {
	s := &Policies{}
	s.p.Store(p)
	return s
}

// Current returns the policy set last.
func (s *Policies) Current() *policy.Policy {
	s.reads.Add(1)
	return s.p.Load()
}

// Set swaps the policy, as a reload does.
func (s *Policies) Set(p *policy.Policy) { s.p.Store(p) }

// Reads is how many times Current was called.
func (s *Policies) Reads() int64 { return s.reads.Load() }

// Recorder is an enforcer.Reporter that keeps every record, in order.
type Recorder struct {
	mu   sync.Mutex
	recs []enforcer.Record
}

var _ enforcer.Reporter = (*Recorder)(nil)

// Report keeps rec.
func (r *Recorder) Report(rec enforcer.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

// Records returns a copy of the records so far.
func (r *Recorder) Records() []enforcer.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// Registry is a provenance.Registry that serves the manifests a test lists
// by (repository, digest), can be taken down, and counts what it was asked.
type Registry struct {
	mu     sync.Mutex
	serves map[[2]string]bool
	down   bool
	asks   int
}

// NewRegistry returns a registry serving each {repository, digest} pair.
func NewRegistry(serves ...[2]string) *Registry {
	r := &Registry{serves: map[[2]string]bool{}}
	for _, s := range serves {
		r.serves[s] = true
	}
	return r
}

// HasManifest answers from the list, or fails as an unreachable registry
// does while the registry is down.
func (r *Registry) HasManifest(_ context.Context, repository, digest string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asks++
	if r.down {
		return false, errors.New("dial tcp 127.0.0.1:5000: connection refused")
	}
	return r.serves[[2]string{repository, digest}], nil
}

// SetDown takes the registry down or brings it back.
func (r *Registry) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Asks is how many times HasManifest was called.
func (r *Registry) Asks() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asks
}

// Serve adds a {repository, digest} pair the registry serves.
func (r *Registry) Serve(repository, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serves[[2]string{repository, digest}] = true
}
