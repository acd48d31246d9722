package containerd

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// fakeLeases is the fake containerd with leases over a content store of
// images (by the digest of their index or manifest).
type fakeLeases struct {
	*fakeAPI
	lmu      sync.Mutex
	leases   map[string][]Lease // by namespace
	images   map[string]LeasedImage
	released []string // "ns lease whole|part resources..."
}

func (f *fakeLeases) Leases(_ context.Context, ns string) ([]Lease, error) {
	f.lmu.Lock()
	defer f.lmu.Unlock()
	return slices.Clone(f.leases[ns]), nil
}

func (f *fakeLeases) ImageContent(_ context.Context, _ string, d string) (LeasedImage, bool, error) {
	img, ok := f.images[d]
	return img, ok, nil
}

func (f *fakeLeases) Release(_ context.Context, ns, id string, rs []LeaseResource, whole bool) error {
	f.lmu.Lock()
	defer f.lmu.Unlock()
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	how := "part"
	if whole {
		how = "whole"
	}
	f.released = append(f.released, ns+" "+id+" "+how+" "+joinIDs(ids))
	return nil
}

func joinIDs(ids []string) string {
	out := ""
	for i, s := range ids {
		if i > 0 {
			out += ","
		}
		out += s[len(s)-1:] // the fake's digests repeat one character
	}
	return out
}

func denyPolicy(t *testing.T, mode policy.Mode) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("mode: " + string(mode) + "\nlocal-images: deny\n" + basePolicy)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSweepLeases: an image only a lease holds is released once the lease
// was seen idle twice, leaseIdleFor apart; a lease in use (an ingest, an
// active snapshot), an image a record names, and other things a lease
// holds are left alone.
func TestSweepLeases(t *testing.T) {
	content := func(c byte) LeaseResource { return LeaseResource{Type: "content", ID: dg(c)} }
	snap := func(c byte) LeaseResource { return LeaseResource{Type: "snapshots/overlayfs", ID: dg(c)} }
	// a: index of manifest b (config c, layer d, chain e); f: a manifest
	// (config g, layer h, chain i) that a record names.
	images := map[string]LeasedImage{
		dg('a'): {Blobs: []string{dg('a'), dg('b'), dg('c'), dg('d')}, Chains: []string{dg('e')}},
		dg('b'): {Blobs: []string{dg('b'), dg('c'), dg('d')}, Chains: []string{dg('e')}},
		dg('f'): {Blobs: []string{dg('f'), dg('g'), dg('h')}, Chains: []string{dg('i')}},
	}
	leased := []LeaseResource{content('a'), content('b'), content('c'), content('d'), snap('e')}
	for _, tc := range []struct {
		name   string
		leases []Lease
		mode   policy.Mode
		local  string // "allow": names alone
		want   []string
		recs   []string
	}{
		{name: "a leased pull whose record was deleted", leases: []Lease{{ID: "evil", Resources: leased}},
			want: []string{"default evil whole a,b,c,d,e"}, recs: []string{"removed default " + dg('a')}},
		{name: "other things the lease holds stay", leases: []Lease{{ID: "evil", Resources: append(slices.Clone(leased), content('z'), snap('y'))}},
			want: []string{"default evil part a,b,c,d,e"}, recs: []string{"removed default " + dg('a')}},
		{name: "an image a record names", leases: []Lease{{ID: "done", Resources: []LeaseResource{content('f'), content('g'), content('h'), snap('i')}}}},
		{name: "a pull writing a blob", leases: []Lease{{ID: "pull", Resources: append(slices.Clone(leased), LeaseResource{Type: "ingests", ID: "layer-x"})}}},
		{name: "an unpack in progress", leases: []Lease{{ID: "pull", Resources: append(slices.Clone(leased), LeaseResource{Type: "snapshots/overlayfs", ID: "extract-1", Active: true})}}},
		{name: "BuildKit's cache record", leases: []Lease{{ID: "cache", Labels: map[string]string{"containerd.io/gc.flat": "2026-12-08T00:00:00Z"}, Resources: leased}}},
		{name: "no image in the lease", leases: []Lease{{ID: "cache", Resources: []LeaseResource{content('d'), snap('e')}}}},
		{name: "audit mode reports", mode: policy.ModeAudit, leases: []Lease{{ID: "evil", Resources: leased}},
			recs: []string{"would-remove default " + dg('a')}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLeases{fakeAPI: newFake(), leases: map[string][]Lease{"default": tc.leases}, images: images}
			f.addImage("default", "registry.local/approved/app:1", dg('f'))
			pol := enforcertest.NewPolicies(nil)
			pol.Set(denyPolicy(t, enforceUnless(tc.mode)))
			rec := &recorder{}
			g := New(f, pol, rec, quietLog())
			now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
			g.now = func() time.Time { return now }
			g.exec.Now = g.now
			ctx := context.Background()
			for _, step := range []time.Duration{0, leaseIdleFor / 2, leaseIdleFor} {
				now = now.Add(step)
				if err := g.sweepLeases(ctx, "default"); err != nil {
					t.Fatal(err)
				}
				if step < leaseIdleFor && (len(f.released) > 0 || len(rec.records()) > 0) {
					t.Fatalf("released after %v idle: %q %q", step, f.released, rec.summary())
				}
			}
			if !slices.Equal(f.released, tc.want) {
				t.Errorf("released %q, want %q", f.released, tc.want)
			}
			if got := rec.summary(); !slices.Equal(got, tc.recs) {
				t.Errorf("records %q, want %q", got, tc.recs)
			}
		})
	}
}

// TestSweepLeasesKeepsBuildHistory: dockerd's build history (BuildKit's
// results of past builds, held by leases in moby_history) is not released.
func TestSweepLeasesKeepsBuildHistory(t *testing.T) {
	content := func(c byte) LeaseResource { return LeaseResource{Type: "content", ID: dg(c)} }
	images := map[string]LeasedImage{dg('a'): {Blobs: []string{dg('a'), dg('b')}}}
	leased := []Lease{{ID: "ref_build1", Resources: []LeaseResource{content('a'), content('b')}}}
	f := &fakeLeases{fakeAPI: newFake(), images: images,
		leases: map[string][]Lease{buildHistoryNamespace: leased, "default": leased}}
	pol := enforcertest.NewPolicies(nil)
	pol.Set(denyPolicy(t, policy.ModeEnforce))
	g := New(f, pol, &recorder{}, quietLog())
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	g.exec.Now = g.now
	for _, step := range []time.Duration{0, leaseIdleFor} {
		now = now.Add(step)
		for _, ns := range []string{buildHistoryNamespace, "default"} {
			if err := g.sweepLeases(context.Background(), ns); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The same lease elsewhere goes: the namespace alone keeps it.
	if want := []string{"default ref_build1 whole a,b"}; !slices.Equal(f.released, want) {
		t.Errorf("released %q, want %q", f.released, want)
	}
}

// TestSweepLeasesWaitsForChange: a lease whose resources change between
// two looks is active (a pull), and its idle time starts over; under
// local-images: allow nothing is swept.
func TestSweepLeasesWaitsForChange(t *testing.T) {
	f := &fakeLeases{fakeAPI: newFake(), images: map[string]LeasedImage{dg('a'): {Blobs: []string{dg('a')}}},
		leases: map[string][]Lease{"default": {{ID: "pull", Resources: []LeaseResource{{Type: "content", ID: dg('a')}}}}}}
	pol := enforcertest.NewPolicies(nil)
	pol.Set(denyPolicy(t, policy.ModeEnforce))
	g := New(f, pol, &recorder{}, quietLog())
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	ctx := context.Background()
	_ = g.sweepLeases(ctx, "default")
	f.leases["default"][0].Resources = append(f.leases["default"][0].Resources, LeaseResource{Type: "content", ID: dg('b')})
	now = now.Add(leaseIdleFor)
	_ = g.sweepLeases(ctx, "default")
	if len(f.released) > 0 {
		t.Fatalf("a lease that changed was released: %q", f.released)
	}
	now = now.Add(leaseIdleFor)
	_ = g.sweepLeases(ctx, "default")
	if len(f.released) != 1 {
		t.Fatalf("released %q, want the lease once idle and unchanged", f.released)
	}

	// Under local-images: allow names alone are judged: nothing is swept.
	f.released = nil
	pol2 := enforcertest.NewPolicies(nil)
	pol2.Set(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	g2 := New(f, pol2, &recorder{}, quietLog())
	g2.now = g.now
	for range 3 {
		now = now.Add(leaseIdleFor)
		_ = g2.sweepLeases(ctx, "default")
	}
	if len(f.released) > 0 {
		t.Fatalf("released under local-images: allow: %q", f.released)
	}
}

func enforceUnless(m policy.Mode) policy.Mode {
	if m == "" {
		return policy.ModeEnforce
	}
	return m
}
