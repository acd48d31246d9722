package containerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// A container is judged by the content it runs, not by what it says it
// runs: its Image field and CRI's image-name label are written by whoever
// creates it. Its root file system is a snapshot prepared from a committed
// chain; containerd's unpacker names an image's top snapshot by the chain
// ID of the image's layers (identity.ChainID of its config's diff IDs), in
// every snapshotter. So the container's snapshot parent, looked up in the
// snapshotter, is matched against the chain IDs of the namespace's images,
// and the images it matches are judged with all their names. A chain no
// image has (content pulled under a lease and its record deleted, layers
// committed by hand) is not from an allowed image.

// contentState is what the guard knows of containers' content. Its maps
// are guarded by Guard.keptMu.
type contentState struct {
	chains chainCache
	// started is when this guard was made: a container created earlier
	// may have been allowed when it started.
	started time.Time
	// allowed holds the containers last judged allowed; ran what each
	// allowed container was found to run. By namespace and ID.
	allowed map[string]bool
	ran     map[string]remembered
}

// reconcileContainers judges every container of the namespace by its
// content and ends the tasks whose container is gone. It returns the
// namespace's image records, for the reconcile to judge next.
func (g *Guard) reconcileContainers(ctx context.Context, ns string, listed time.Time) ([]Image, error) {
	// Tasks are listed before containers: a task is created after its
	// container, so one listed here whose container is not listed next
	// has lost it.
	tasks, err := g.api.Tasks(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	cs, err := g.api.Containers(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	imgs, err := g.api.Images(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	idx, err := g.indexImages(ctx, ns, imgs)
	if err != nil {
		return nil, err
	}
	view := g.snapshotsOf(ctx, ns, cs)
	live := make(map[string]bool, len(cs))
	for _, c := range cs {
		live[ns+"\x00"+c.ID] = true
		switch g.ownership(ctx, workKey{ns: ns, containerID: c.ID}, listed) {
		case Owned:
			continue // Docker's: the Docker guard judges it
		case OwnerUnknown:
			g.reconcileLater()
			continue
		}
		g.checkContainer(ctx, ns, c, reconcileEvent, idx, view)
	}
	g.reapOrphans(ctx, ns, tasks, live)
	g.forgetGone(ns, live)
	return imgs, nil
}

// chainCache maps an image target (manifest or index digest) to the chain
// IDs of its manifests. Content under a digest never changes, so an entry
// made when every manifest was present is final. One made while some were
// missing (an index of which one platform was pulled, as CRI does) is used
// as it is, and read again only when a container's chain matches no image
// (a later pull of another platform completes it).
type chainCache struct {
	mu sync.Mutex
	m  map[string]chainEntry
}

type chainEntry struct {
	chains   []string
	complete bool
}

func (c *chainCache) get(target string) (chainEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[target]
	return v, ok
}

func (c *chainCache) put(target string, e chainEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedChains {
		c.m = map[string]chainEntry{} // content comes and goes; start over
	}
	c.m[target] = e
}

// maxCachedChains bounds the chain cache: far more images than a node
// holds.
const maxCachedChains = 50000

// nsImages is a namespace's image records, by target and by chain ID.
type nsImages struct {
	byTarget map[string][]Image
	byChain  map[string][]string // chain ID -> targets, in listing order
	// incomplete are records of contents some manifests of which were
	// missing when their chains were read.
	incomplete []Image
	// verdicts memoizes, for one reconcile, the verdict on a content
	// judged with given names under a given policy: many containers run
	// the same image.
	mu       sync.Mutex
	verdicts map[verdictKey]policy.Verdict
}

type verdictKey struct{ policyHash, target, first string }

// indexImages reads the chain IDs of every content the records point at.
// Content whose manifests cannot be read (a corrupt blob a socket user
// wrote) has no chain: no container matches it.
func (g *Guard) indexImages(ctx context.Context, ns string, recs []Image) (*nsImages, error) {
	idx := &nsImages{byTarget: map[string][]Image{}, byChain: map[string][]string{}, verdicts: map[verdictKey]policy.Verdict{}}
	for _, r := range recs {
		if r.Target == "" {
			continue
		}
		if _, seen := idx.byTarget[r.Target]; !seen {
			e, ok := g.chains.get(r.Target)
			if !ok {
				var err error
				if e, err = g.readChains(ctx, ns, r); err != nil {
					return nil, err
				}
			}
			if !e.complete {
				idx.incomplete = append(idx.incomplete, r)
			}
			idx.addChains(r.Target, e.chains)
		}
		idx.byTarget[r.Target] = append(idx.byTarget[r.Target], r)
	}
	return idx, nil
}

// readChains reads the chain IDs of the content r points at and caches
// them.
func (g *Guard) readChains(ctx context.Context, ns string, r Image) (chainEntry, error) {
	chains, complete, err := g.api.ChainIDs(ctx, ns, r.Target)
	if err != nil {
		if ctx.Err() != nil || isUnavailable(err) {
			return chainEntry{}, fmt.Errorf("reading the layers of image %s: %w", r.Name, err)
		}
		g.log.WithError(err).WithField("image", r.Name).Debug("containerd: cannot read the image's layers; no container is judged to run it")
		return chainEntry{}, nil // not cached: read again next time
	}
	e := chainEntry{chains: chains, complete: complete}
	g.chains.put(r.Target, e)
	return e, nil
}

func (idx *nsImages) addChains(target string, chains []string) {
	for _, ch := range chains {
		if !slices.Contains(idx.byChain[ch], target) {
			idx.byChain[ch] = append(idx.byChain[ch], target)
		}
	}
}

// targetsOf are the contents whose layers chain is. When none is, the
// contents some manifests of which were missing are read again, once.
func (g *Guard) targetsOf(ctx context.Context, ns string, idx *nsImages, chain string) ([]string, error) {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if ts := idx.byChain[chain]; len(ts) > 0 || len(idx.incomplete) == 0 || chain == "" {
		return ts, nil
	}
	for _, r := range idx.incomplete {
		e, err := g.readChains(ctx, ns, r)
		if err != nil {
			return nil, err
		}
		idx.addChains(r.Target, e.chains)
	}
	idx.incomplete = nil
	return idx.byChain[chain], nil
}

// snapshotView answers snapshot look-ups during one reconcile from one
// listing per snapshotter; nil looks each up.
type snapshotView map[string]map[string]Snapshot // snapshotter -> name -> snapshot

func (g *Guard) snapshotsOf(ctx context.Context, ns string, cs []Container) snapshotView {
	v := snapshotView{}
	for _, c := range cs {
		sn := c.Snapshotter
		if c.SnapshotKey == "" && sn == "" {
			sn = dockerSnapshotter
		}
		if _, done := v[sn]; done {
			continue
		}
		list, err := g.api.Snapshots(ctx, ns, sn)
		if err != nil {
			v[sn] = nil // looked up one by one
			continue
		}
		m := make(map[string]Snapshot, len(list))
		for _, s := range list {
			m[s.Name] = s
		}
		v[sn] = m
	}
	return v
}

// errNoSnapshot: the container's root file system is no snapshot (ctr run
// --rootfs: a directory of the host).
var errNoSnapshot = errors.New("the container has no root file system snapshot")

// errSnapshotGone: the container names a snapshot its snapshotter does not
// have.
var errSnapshotGone = errors.New("the container's root file system snapshot does not exist")

// chainOf is the committed chain the container's snapshot was made from:
// the parent of its active snapshot or view ("" for a snapshot prepared
// from nothing). Docker's containers (Docker 29's containerd image store)
// name no snapshot: Docker prepares one keyed by the container's ID, over
// an init layer <ID>-init of its own, and mounts it itself; that snapshot
// is read instead, through the init layer.
func (g *Guard) chainOf(ctx context.Context, ns string, c Container, view snapshotView) (string, error) {
	key, snapshotter := c.SnapshotKey, c.Snapshotter
	if key == "" {
		key = c.ID
		if snapshotter == "" {
			snapshotter = dockerSnapshotter
		}
	}
	s, err := g.snapshot(ctx, ns, snapshotter, key, view)
	if c.SnapshotKey == "" && (isNotFound(err) || errors.Is(err, errSnapshotGone)) {
		return "", errNoSnapshot
	}
	if err != nil {
		return "", err
	}
	if s.Committed {
		return s.Name, nil
	}
	if c.SnapshotKey == "" && s.Parent == c.ID+"-init" {
		if s, err = g.snapshot(ctx, ns, snapshotter, s.Parent, view); err != nil {
			return "", err
		}
	}
	return s.Parent, nil
}

// dockerSnapshotter is the snapshotter Docker's containerd image store
// uses by default.
const dockerSnapshotter = "overlayfs"

func (g *Guard) snapshot(ctx context.Context, ns, snapshotter, key string, view snapshotView) (Snapshot, error) {
	if m := view[snapshotter]; m != nil {
		if s, ok := m[key]; ok {
			return s, nil
		}
	}
	s, err := g.api.Snapshot(ctx, ns, snapshotter, key)
	if isNotFound(err) {
		return Snapshot{}, errSnapshotGone
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("looking up snapshot %s (%s): %w", key, snapshotter, err)
	}
	return s, nil
}

// claimed is the image a container says it runs: its Image field, or for
// a CRI container the image-name label or annotation, or a sandbox's. It
// proves nothing about content; it is shown in the journal and counts as
// a name only when it is a record of the content the container runs.
func claimed(c Container) string {
	for _, n := range []string{c.Image, c.Labels[criImageName], c.Annotations[criImageName], c.Annotations[criSandboxImageName]} {
		if n != "" {
			return n
		}
	}
	return ""
}

// remembered is the image a container was found to run when its content
// still had records: a container keeps running content whose records were
// deleted since (ctr images rm), and is judged by what they were.
type remembered struct {
	chain string
	image policy.Image
}

func (g *Guard) remember(ns, id string, r remembered) {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	if g.ran == nil {
		g.ran = map[string]remembered{}
	}
	g.ran[ns+"\x00"+id] = r
}

func (g *Guard) recall(ns, id string) (remembered, bool) {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	r, ok := g.ran[ns+"\x00"+id]
	return r, ok
}

// forgetGone drops what is remembered of the namespace's containers that
// are gone.
func (g *Guard) forgetGone(ns string, live map[string]bool) {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	for _, m := range []map[string]bool{g.kept, g.allowed} {
		for k := range m {
			if nsOf(k) == ns && !live[k] {
				delete(m, k)
			}
		}
	}
	for k := range g.ran {
		if nsOf(k) == ns && !live[k] {
			delete(g.ran, k)
		}
	}
}

func nsOf(key string) string {
	for i := range len(key) {
		if key[i] == 0 {
			return key[:i]
		}
	}
	return key
}

// judge is the verdict on img under p, once per reconcile for the same
// content and names.
func (idx *nsImages) judge(ps interface {
	Judge(*policy.Policy, policy.Image, time.Time) policy.Verdict
}, p *policy.Policy, img policy.Image, now time.Time) policy.Verdict {
	k := verdictKey{p.Hash, img.Digest, ""}
	if len(img.Names) > 0 {
		k.first = img.Names[0] // the names are the content's records, the claimed one first
	}
	idx.mu.Lock()
	v, ok := idx.verdicts[k]
	idx.mu.Unlock()
	if ok {
		return v
	}
	v = ps.Judge(p, img, now)
	idx.mu.Lock()
	idx.verdicts[k] = v
	idx.mu.Unlock()
	return v
}
