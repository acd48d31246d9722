package containerd

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// Content a lease holds, under local-images: deny.
//
// A client of the containerd socket can pull under a lease of its own:
// when the guard deletes the image record, the lease still holds the
// index, manifests, configs, layers and unpacked snapshots, and the
// content stays, known by no name. Under local-images: deny nothing
// vouches for it, so it does not stay either. At the end of each
// namespace's reconcile, the guard looks at every lease and, in one it
// has seen idle twice, finds the images it holds (a blob that is an index
// or a manifest, not one of another such blob's manifests); an image that
// no image record of the namespace names (as its target, or as a manifest
// of its target) is released from the lease: its blobs and the snapshots
// its layers unpack to (their chain IDs). A lease left with nothing is
// deleted. Then containerd collects garbage.
//
// What this never removes:
//   - Anything an image record, a container or another lease uses:
//     releasing drops only this lease's hold, and containerd's garbage
//     collector keeps whatever something else references (an allowed
//     record's layers shared with the released image, the snapshot chain
//     under a container's root file system), in this or any namespace.
//   - A pull in progress. containerd's client pulls under a lease (with
//     containerd.io/gc.expire 24 hours ahead, so containerd itself drops
//     it if the client dies) and writes the image record only at the end;
//     until then the lease holds an image no record names. While it runs
//     the lease holds an ingest (a blob being written, even one stalled on
//     the network) or an active snapshot (a layer being unpacked), and
//     what it holds changes from one look to the next. A lease is released
//     only once it was seen idle (neither) with the same resources at two
//     reconciles at least leaseIdleFor apart. An idle pull lease is one
//     whose client has finished (the record then names the image) or
//     given up: releasing it only does early what containerd's own
//     collector does when gc.expire passes.
//   - Docker's and BuildKit's own use of leases: a container's writable
//     layer and an image mount are active snapshots (the lease is busy),
//     and BuildKit keeps each cache record, base images of builds among
//     them, under a lease it marks containerd.io/gc.flat (and an
//     operation's under one marked buildkit/lease.temporary), which is
//     left alone: releasing from it would leave BuildKit's cache pointing
//     at content that is gone. Docker's namespaces are left to the Docker
//     guard when both are guarded.
//
// Content a lease holds that is no image — layers and snapshots without a
// manifest, as a client that dropped the manifest from its lease would
// leave — is not found here, nor is what a lease marked as BuildKit's
// holds (labels anyone can set): it stays until its lease goes, and a container
// made from it is judged by its snapshot chain like any other.

// buildHistoryNamespace is where dockerd's BuildKit keeps its build
// history (`docker buildx history`): the results of past builds, held by
// leases of their own and named by no record. Releasing them would lose
// that history and stop nothing: a container made from what a lease holds
// is judged by its snapshot chain wherever it is.
const buildHistoryNamespace = "moby_history"

// leaseIdleFor is how long a lease must stay idle and unchanged between
// the two looks that release it.
const leaseIdleFor = 30 * time.Second

// reasonLeased is why an image held only by a lease goes.
const reasonLeased = "content held only by a lease, named by no image record, so no allowed repository vouches for it (local-images: deny)"

// leaseSweep remembers the leases seen idle, by namespace and ID.
type leaseSweep struct {
	mu   sync.Mutex
	idle map[string]idleLease
}

type idleLease struct {
	since time.Time
	held  string // its resources, sorted: a change is activity
}

// sweepLeases releases, in namespace ns, the images that only leases hold
// (see above). It is a reconcile's last step.
func (g *Guard) sweepLeases(ctx context.Context, ns string) error {
	p := g.policies.Current()
	la, ok := g.api.(leaseAPI)
	if p == nil || p.LocalImages != policy.LocalImagesDeny || !ok || ns == buildHistoryNamespace {
		return nil
	}
	ls, err := la.Leases(ctx, ns)
	if err != nil || len(ls) == 0 {
		return err
	}
	now := g.now()
	var due []Lease
	g.leases.mu.Lock()
	if g.leases.idle == nil {
		g.leases.idle = map[string]idleLease{}
	}
	live := map[string]bool{}
	for _, l := range ls {
		key := ns + "\x00" + l.ID
		live[key] = true
		if leaseBusy(l) {
			delete(g.leases.idle, key)
			continue
		}
		held := heldBy(l)
		prev, seen := g.leases.idle[key]
		switch {
		case !seen || prev.held != held:
			g.leases.idle[key] = idleLease{since: now, held: held}
		case now.Sub(prev.since) >= leaseIdleFor:
			due = append(due, l)
		}
	}
	for key := range g.leases.idle {
		if strings.HasPrefix(key, ns+"\x00") && !live[key] {
			delete(g.leases.idle, key)
		}
	}
	g.leases.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	recorded, err := g.recordedContent(ctx, la, ns)
	if err != nil {
		return err
	}
	for _, l := range due {
		g.releaseUnnamed(ctx, p, la, ns, l, recorded)
	}
	return nil
}

// leaseBusy: the lease is in use by a write or an unpack (or holds a
// container's writable layer), or is BuildKit's.
func leaseBusy(l Lease) bool {
	for _, k := range buildkitLeaseLabels {
		if _, ok := l.Labels[k]; ok {
			return true
		}
	}
	return slices.ContainsFunc(l.Resources, func(r LeaseResource) bool { return r.Type == "ingests" || r.Active })
}

// buildkitLeaseLabels mark BuildKit's leases: its cache records (held
// without what they reference) and the temporary ones of an operation.
var buildkitLeaseLabels = []string{"containerd.io/gc.flat", "buildkit/lease.temporary"}

func heldBy(l Lease) string {
	s := make([]string, len(l.Resources))
	for i, r := range l.Resources {
		s[i] = r.Type + "=" + r.ID
	}
	sort.Strings(s)
	return strings.Join(s, "\n")
}

// recordedContent is every index and manifest the namespace's image
// records name: their targets, and the manifests of targets that are
// indexes.
func (g *Guard) recordedContent(ctx context.Context, la leaseAPI, ns string) (map[string]bool, error) {
	imgs, err := g.api.Images(ctx, ns)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	out := map[string]bool{}
	for _, img := range imgs {
		if out[img.Target] {
			continue
		}
		out[img.Target] = true
		if c, ok, err := la.ImageContent(ctx, ns, img.Target); err == nil && ok {
			for _, b := range c.Blobs {
				out[b] = true
			}
		}
	}
	return out, nil
}

// releaseUnnamed releases from lease l each image it holds that no record
// names.
func (g *Guard) releaseUnnamed(ctx context.Context, p *policy.Policy, la leaseAPI, ns string, l Lease, recorded map[string]bool) {
	held := map[string]LeasedImage{}
	inner := map[string]bool{} // manifests of an index the lease holds
	for _, r := range l.Resources {
		if r.Type != "content" {
			continue
		}
		img, ok, err := la.ImageContent(ctx, ns, r.ID)
		if err != nil {
			g.log.WithFields(logrus.Fields{"namespace": ns, "lease": l.ID, "digest": r.ID, "error": err}).Warn("containerd: cannot read content a lease holds")
			return
		}
		if ok {
			held[r.ID] = img
			for _, b := range img.Blobs[1:] {
				inner[b] = true
			}
		}
	}
	release := map[LeaseResource]bool{}
	var roots []string
	for d, img := range held {
		if inner[d] || recorded[d] {
			continue
		}
		roots = append(roots, d)
		blobs, chains := setOf(img.Blobs), setOf(img.Chains)
		for _, r := range l.Resources {
			if r.Type == "content" && blobs[r.ID] || strings.HasPrefix(r.Type, "snapshots/") && chains[r.ID] {
				release[r] = true
			}
		}
	}
	if len(roots) == 0 {
		return
	}
	sort.Strings(roots)
	rs := make([]LeaseResource, 0, len(release))
	for r := range release {
		rs = append(rs, r)
	}
	whole := len(rs) == len(l.Resources)
	for i, d := range roots {
		step := engine.Step{Policy: p,
			Record: enforcer.Record{Action: enforcer.Removed, Namespace: ns, Event: reconcileEvent, ImageID: d,
				Decision: policy.Decision{Input: d, Reason: reasonLeased + "; lease " + l.ID, PolicyHash: p.Hash}},
			AllowedBy: func(prev *policy.Policy) bool { return prev.LocalImages != policy.LocalImagesDeny },
		}
		if i == 0 { // one release for all the lease's unnamed images
			step.Do = func(ctx context.Context) (enforcer.Action, error) {
				// A record made since the look names it now: its own
				// judgement decides.
				for _, d := range roots {
					if recs, err := g.api.ImagesByTarget(ctx, ns, d); err != nil && !isNotFound(err) || len(recs) > 0 {
						return "", engine.ErrNotNow
					}
				}
				if err := la.Release(ctx, ns, l.ID, rs, whole); err != nil {
					if isNotFound(err) {
						return "", engine.ErrGone
					}
					return "", err
				}
				return "", nil
			}
		} else {
			step.Do = func(context.Context) (enforcer.Action, error) { return "", nil }
		}
		if g.exec.Execute(ctx, step) != engine.Reported && i == 0 {
			return
		}
	}
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}
