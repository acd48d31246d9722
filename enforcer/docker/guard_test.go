package docker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64) // allowed for reg.example/pinned/app
	digestB = "sha256:" + strings.Repeat("b", 64)
	digestC = "sha256:" + strings.Repeat("c", 64) // denied everywhere (a compromised build)
	testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// testPolicy allows everything under reg.example/approved/ and one pinned
// digest of reg.example/pinned/app, except its tag edge; content with
// digestC is denied wherever it comes from; everything else is denied.
// Names alone decide (local-images: allow): provenance has its own tests
// (provenance_test.go), and most fake images here carry no digest.
func testPolicy(t testing.TB, mode policy.Mode, running policy.Running) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf(`mode: %s
default: deny
running: %s
local-images: allow
allow:
  - image: reg.example/approved/**
  - image: reg.example/pinned/app
    digests: ["%s"]
deny:
  - image: reg.example/pinned/app
    tags: [edge]
  - image: reg.example/**
    digests: ["%s"]
`, mode, running, digestA, digestC)
	return parsePolicy(t, src)
}

// line renders a record for comparison: action, event, the reference
// judged, and the container when there is one.
func line(rec enforcer.Record) string {
	s := fmt.Sprintf("%s %s %s", rec.Action, rec.Event, rec.Decision.Input)
	if rec.ContainerID != "" {
		s += " ctr=" + shortID(rec.ContainerID)
	}
	if rec.Err != nil {
		s += " err"
	}
	return s
}

func lines(recs []enforcer.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, line(r))
	}
	sort.Strings(out)
	return out
}

type harness struct {
	t          *testing.T
	f          *fakeDocker
	g          *Guard
	pol        *enforcertest.Policies
	rec        *enforcertest.Recorder
	logs       *logtest.Hook
	stream     *fakeStream
	reconciles chan error
	done       chan error
	cancel     context.CancelFunc
	stopOnce   sync.Once
}

func startGuard(t *testing.T, f *fakeDocker, p *policy.Policy, opts ...Option) *harness {
	t.Helper()
	return startGuardOn(t, f, f, p, opts...)
}

// startGuardOn is startGuard with api in front of f (a fake that behaves
// like another dockerd).
func startGuardOn(t *testing.T, f *fakeDocker, api API, p *policy.Policy, opts ...Option) *harness {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	h := &harness{t: t, f: f, pol: enforcertest.NewPolicies(nil), rec: &enforcertest.Recorder{}, logs: hook,
		reconciles: make(chan error, 64), done: make(chan error, 1)}
	h.pol.Set(p)
	opts = append([]Option{WithBackoff(time.Millisecond, 20*time.Millisecond), WithClock(func() time.Time { return testNow })}, opts...)
	opts = append(opts, WithObserver(reconcileObserver(h.reconciles)))
	h.g = New(api, h.pol, h.rec, log, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.g.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// startOn starts a guard under p on a fake Docker that setup (if any)
// filled, waits for its first reconcile, which must find nothing to do,
// and forgets the mutations so far.
func startOn(t *testing.T, setup func(*fakeDocker), p *policy.Policy, opts ...Option) (*fakeDocker, *harness) {
	t.Helper()
	f := newFake()
	if setup != nil {
		setup(f)
	}
	h := startGuard(t, f, p, opts...)
	h.connected()
	if recs := h.rec.Records(); len(recs) != 0 {
		t.Fatalf("the setup is not policy-conformant: %q", lines(recs))
	}
	f.mu.Lock()
	f.mutations = nil
	f.mu.Unlock()
	return f, h
}

// enforceUnless is m, or enforce when a test case leaves it empty.
func enforceUnless(m policy.Mode) policy.Mode {
	if m == "" {
		return policy.ModeEnforce
	}
	return m
}

// parsePolicy parses a test policy.
func parsePolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return p
}

// stop cancels Run and checks that it returns nil promptly.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		h.f.mu.Lock()
		if h.f.listGate != nil {
			select {
			case <-h.f.listGate:
			default:
				close(h.f.listGate)
			}
		}
		h.f.mu.Unlock()
		h.cancel()
		select {
		case err := <-h.done:
			if err != nil {
				h.t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			h.t.Errorf("Run did not return after its context was cancelled")
		}
	})
}

// connected waits for the guard to subscribe and finish its reconcile.
func (h *harness) connected() {
	h.t.Helper()
	h.stream = h.f.stream(h.t)
	h.waitReconcile()
}

func (h *harness) waitReconcile() {
	h.t.Helper()
	select {
	case err := <-h.reconciles:
		if err != nil {
			h.t.Fatalf("reconcile: %v", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("no reconcile")
	}
}

// settle waits until every event sent so far has been worked on.
func (h *harness) settle() {
	h.t.Helper()
	// The reader takes events in order and queues an event's work before
	// it takes the next, so once it has taken this marker, the work for
	// every earlier event is queued or done.
	h.stream.send(h.t, Event{Type: "marker"})
	select {
	case <-h.g.loop.Idle():
	case <-time.After(5 * time.Second):
		h.t.Fatal("the guard's work did not finish")
	}
}

func (h *harness) wantRecords(want ...string) {
	h.t.Helper()
	got := lines(h.rec.Records())
	sort.Strings(want)
	if !slices.Equal(got, want) {
		h.t.Errorf("records:\n got  %q\n want %q", got, want)
	}
}

// reconcileObserver passes the outcome of every reconcile to a channel.
type reconcileObserver chan error

func (o reconcileObserver) Reconciled(_, _ string, _ time.Duration, err error) { o <- err }
func (o reconcileObserver) Connected(string, bool)                             {}
func (o reconcileObserver) Behind(string, string)                              {}
func (o reconcileObserver) Event(string)                                       {}

// loggedID counts the log entries with a MESSAGE_ID, what SREs filter on.
func (h *harness) loggedID(id string) int {
	n := 0
	for _, e := range h.logs.AllEntries() {
		if e.Data[enforcer.FieldMessageID] == id && e.Data[enforcer.FieldRuntime] == enforcer.RuntimeDocker {
			n++
		}
	}
	return n
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func TestEvents(t *testing.T) {
	const (
		evil     = "reg.example/evil/miner:latest"
		evilDig  = "reg.example/evil/miner@"
		approved = "reg.example/approved/app:1"
	)
	tests := []struct {
		name    string
		mode    policy.Mode
		workers int
		setup   func(f *fakeDocker)
		events  func(f *fakeDocker) []Event
		want    []string
		check   func(t *testing.T, f *fakeDocker, recs []enforcer.Record)
	}{{
		name:   "pull of a denied image removes it",
		events: func(f *fakeDocker) []Event { return []Event{f.pull(id(1), evil, evilDig+digestB)} },
		want:   []string{"removed pull " + evil},
		check: func(t *testing.T, f *fakeDocker, recs []enforcer.Record) {
			if f.hasImage(id(1)) {
				t.Error("the denied image is still there")
			}
			if recs[0].ImageID != id(1) || recs[0].Runtime != enforcer.RuntimeDocker || recs[0].Mode != policy.ModeEnforce ||
				recs[0].Decision.Allowed || recs[0].Decision.Reason == "" || !recs[0].Time.Equal(testNow) {
				t.Errorf("record = %+v", recs[0])
			}
		},
	}, {
		name: "pull of an allowed image is left alone",
		events: func(f *fakeDocker) []Event {
			return []Event{f.pull(id(1), approved, "reg.example/approved/app@"+digestB)}
		},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:1", "reg.example/approved/app@" + digestB})
		},
	}, {
		name:   "pull by digest of a denied image removes it",
		events: func(f *fakeDocker) []Event { return []Event{f.pullByDigest(id(1), evilDig+digestB)} },
		want:   []string{"removed pull " + evilDig + digestB},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if f.hasImage(id(1)) {
				t.Error("the denied image is still there")
			}
		},
	}, {
		name:   "a denied tag on an image with an allowed name is untagged, the allowed name stays",
		setup:  func(f *fakeDocker) { f.addImage(id(1), approved, "reg.example/approved/app@"+digestB) },
		events: func(f *fakeDocker) []Event { return []Event{f.tag(id(1), "reg.example/evil/app:1")} },
		want:   []string{"untagged tag reg.example/evil/app:1"},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(1)), []string{approved, "reg.example/approved/app@" + digestB})
		},
	}, {
		name:   "an allowed tag is left alone",
		setup:  func(f *fakeDocker) { f.addImage(id(1), approved) },
		events: func(f *fakeDocker) []Event { return []Event{f.tag(id(1), "reg.example/approved/app:2")} },
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(1)), []string{approved, "reg.example/approved/app:2"})
		},
	}, {
		name:   "audit mode reports would-remove and removes nothing",
		mode:   policy.ModeAudit,
		events: func(f *fakeDocker) []Event { return []Event{f.pull(id(1), evil, evilDig+digestB)} },
		want:   []string{"would-remove pull " + evil},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "mutations", f.mutationsSoFar(), nil)
			eq(t, "names", f.names(id(1)), []string{evil, evilDig + digestB})
		},
	}, {
		name:    "load: the tag events remove the denied name, the allowed one stays",
		workers: 1,
		events: func(f *fakeDocker) []Event {
			return f.load(actionLoad, id(1), "reg.example/approved/app:2", "reg.example/evil/app:2")
		},
		want: []string{"untagged tag reg.example/evil/app:2"},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:2"})
		},
	}, {
		name: "load whose tag events were missed: every name of the image is judged",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(1), "reg.example/approved/app:2", "reg.example/evil/app:2", "reg.example/evil/app:3")
			return []Event{{Type: typeImage, Action: actionLoad, ID: id(1), Time: time.Now()}}
		},
		want: []string{"untagged load reg.example/evil/app:2", "untagged load reg.example/evil/app:3"},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:2"})
		},
	}, {
		name:    "import under a denied name removes the image",
		workers: 1,
		events:  func(f *fakeDocker) []Event { return f.load(actionImport, id(1), "reg.example/evil/imported:1") },
		want:    []string{"removed tag reg.example/evil/imported:1"},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if f.hasImage(id(1)) {
				t.Error("the imported image is still there")
			}
		},
	}, {
		name:  "container created from an allowed image's short ID is left alone",
		setup: func(f *fakeDocker) { f.addImage(id(1), approved) },
		events: func(f *fakeDocker) []Event {
			return []Event{f.create(Container{ID: cid(1), Image: shortID(id(1)), ImageID: id(1), State: "created"})}
		},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if !f.hasContainer(cid(1)) {
				t.Error("the allowed container was removed")
			}
		},
	}, {
		name: "container created from a denied image's short ID is removed",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(2), evil)
			return []Event{f.create(Container{ID: cid(2), Image: shortID(id(2))[:6], ImageID: id(2), State: "created"})}
		},
		want: []string{"removed create " + evil, "removed create " + evil + " ctr=" + shortID(cid(2))},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if f.hasContainer(cid(2)) || f.hasImage(id(2)) {
				t.Error("the denied container or its image is still there")
			}
		},
	}, {
		name: "container created from a denied digest reference is removed, then its image",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(2), evilDig+digestB)
			return []Event{f.create(Container{ID: cid(2), Image: evilDig + digestB, ImageID: id(2), State: "created"})}
		},
		want: []string{"removed create " + evilDig + digestB, "removed create " + evilDig + digestB + " ctr=" + shortID(cid(2))},
		check: func(t *testing.T, f *fakeDocker, recs []enforcer.Record) {
			if f.hasContainer(cid(2)) || f.hasImage(id(2)) {
				t.Error("the denied container or its image is still there")
			}
			for _, r := range recs {
				if r.ContainerID != "" && r.ImageID != id(2) {
					t.Errorf("container record without its image ID: %+v", r)
				}
			}
		},
	}, {
		name: "container started from an image without names is removed under default deny",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(3))
			f.addContainer(Container{ID: cid(3), Image: id(3), ImageID: id(3), State: "running"})
			return []Event{containerEvent(actionStart, cid(3))}
		},
		want: []string{"removed start " + id(3) + " ctr=" + shortID(cid(3))},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if f.hasContainer(cid(3)) {
				t.Error("the container is still there")
			}
			if !f.hasImage(id(3)) {
				t.Error("a dangling image was removed: dangling images are not judged")
			}
		},
	}, {
		name: "container whose allowed name has moved on to a newer image is left alone",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(4))
			f.addImage(id(5), approved)
			f.addContainer(Container{ID: cid(4), Image: approved, ImageID: id(4), State: "running"})
			return []Event{containerEvent(actionStart, cid(4))}
		},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			if !f.hasContainer(cid(4)) {
				t.Error("the container was removed")
			}
		},
	}, {
		name: "audit mode: a denied container would be removed and stays",
		mode: policy.ModeAudit,
		events: func(f *fakeDocker) []Event {
			f.addImage(id(2), evil)
			return []Event{f.create(Container{ID: cid(2), Image: evil, ImageID: id(2), State: "created"})}
		},
		want: []string{"would-remove create " + evil + " ctr=" + shortID(cid(2))},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "mutations", f.mutationsSoFar(), nil)
		},
	}, {
		name: "audit mode: create and start of one container make one record",
		mode: policy.ModeAudit,
		events: func(f *fakeDocker) []Event {
			f.addImage(id(2), evil)
			return []Event{f.create(Container{ID: cid(2), Image: evil, ImageID: id(2), State: "created"}),
				containerEvent(actionStart, cid(2)), containerEvent(actionStart, cid(2))}
		},
		workers: 1, // so that the record names the create
		want:    []string{"would-remove create " + evil + " ctr=" + shortID(cid(2))},
	}, {
		name: "an image that is already gone is not a failure",
		events: func(f *fakeDocker) []Event {
			ev := f.pull(id(1), evil, "")
			f.beforeRemove = func(string) {
				f.mu.Lock()
				delete(f.images, id(1))
				f.mu.Unlock()
			}
			return []Event{ev}
		},
	}, {
		name: "a container that is already gone is not a failure",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(2), evil)
			f.fail["rm "+cid(2)] = ErrNotFound
			return []Event{f.create(Container{ID: cid(2), Image: evil, ImageID: id(2), State: "created"})}
		},
	}, {
		name: "a failed removal is reported with its error",
		events: func(f *fakeDocker) []Event {
			f.fail["rmi "+evil] = errors.New("device or resource busy")
			return []Event{f.pull(id(1), evil, "")}
		},
		want: []string{"failed pull " + evil + " err"},
		check: func(t *testing.T, f *fakeDocker, recs []enforcer.Record) {
			if !strings.Contains(recs[0].Err.Error(), "device or resource busy") {
				t.Errorf("Err = %v", recs[0].Err)
			}
		},
	}, {
		name: "a denied last name of an image a container uses is kept, not a failure",
		events: func(f *fakeDocker) []Event {
			// The container was created from an allowed name that has
			// since moved on; its image now only has a denied name.
			f.addImage(id(7))
			f.addImage(id(8), approved)
			f.addContainer(Container{ID: cid(7), Image: approved, ImageID: id(7), State: "running"})
			return []Event{f.tag(id(7), "reg.example/evil/x:1")}
		},
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(7)), []string{"reg.example/evil/x:1"})
		},
	}, {
		name: "a tag pulled as an allowed pinned digest is allowed",
		events: func(f *fakeDocker) []Event {
			return []Event{f.pull(id(8), "reg.example/pinned/app:latest", "reg.example/pinned/app@"+digestA)}
		},
		want: nil,
		check: func(t *testing.T, f *fakeDocker, _ []enforcer.Record) {
			eq(t, "names", f.names(id(8)), []string{"reg.example/pinned/app:latest", "reg.example/pinned/app@" + digestA})
		},
	}, {
		name: "a denied tag whose removal would take an allowed digest reference stays",
		events: func(f *fakeDocker) []Event {
			return []Event{f.pull(id(9), "reg.example/pinned/app:edge", "reg.example/pinned/app@"+digestA)}
		},
		want: []string{"failed pull reg.example/pinned/app:edge err"},
		check: func(t *testing.T, f *fakeDocker, recs []enforcer.Record) {
			if !errors.Is(recs[0].Err, ErrWouldRemoveAllowed) || !strings.Contains(recs[0].Err.Error(), digestA) {
				t.Errorf("Err = %v, want ErrWouldRemoveAllowed naming the digest", recs[0].Err)
			}
			eq(t, "names", f.names(id(9)), []string{"reg.example/pinned/app:edge", "reg.example/pinned/app@" + digestA})
		},
	}, {
		name: "a commit under a denied name is removed",
		events: func(f *fakeDocker) []Event {
			f.addImage(id(10), "reg.example/evil/committed:1")
			return []Event{{Type: typeContainer, Action: actionCommit, ID: cid(99),
				Attributes: map[string]string{"imageID": id(10)}, Time: time.Now()}}
		},
		want: []string{"removed commit reg.example/evil/committed:1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.workers != 0 {
				opts = append(opts, WithWorkers(tt.workers))
			}
			f, h := startOn(t, tt.setup, testPolicy(t, enforceUnless(tt.mode), policy.RunningKeep), opts...)
			h.stream.send(t, tt.events(f)...)
			h.settle()
			h.wantRecords(tt.want...)
			if tt.check != nil {
				recs := h.rec.Records()
				if len(tt.want) > 0 && len(recs) == 0 {
					return
				}
				tt.check(t, f, recs)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	const evil = "reg.example/evil/miner:1"
	runningEvil := func(state string) func(f *fakeDocker) {
		return func(f *fakeDocker) {
			f.addImage(id(1), evil)
			f.addContainer(Container{ID: cid(1), Name: "miner", Image: evil, ImageID: id(1), State: state})
		}
	}
	ctr := " ctr=" + shortID(cid(1))
	tests := []struct {
		name      string
		mode      policy.Mode
		running   policy.Running
		setup     func(f *fakeDocker)
		want      []string
		mutations []string
		// anyOrder: the first mutations may come in any order (removals
		// made side by side).
		anyOrder int
		check    func(t *testing.T, f *fakeDocker)
	}{{
		name:    "running container of a denied image is reported and kept with its image (running: keep)",
		running: policy.RunningKeep,
		setup:   runningEvil("running"),
		// One record for the container, one for the image name it keeps.
		want: []string{"reported reconcile " + evil + ctr, "reported reconcile " + evil + ctr},
	}, {
		name:      "running container of a denied image is stopped and removed, then its image (running: stop)",
		running:   policy.RunningStop,
		setup:     runningEvil("running"),
		want:      []string{"stopped reconcile " + evil + ctr, "removed reconcile " + evil},
		mutations: []string{"stop " + cid(1), "rm " + cid(1), "rmi " + evil},
	}, {
		name:      "paused counts as running",
		running:   policy.RunningKeep,
		setup:     runningEvil("paused"),
		want:      []string{"reported reconcile " + evil + ctr, "reported reconcile " + evil + ctr},
		mutations: nil,
	}, {
		name:      "created container of a denied image is removed, then its image",
		running:   policy.RunningKeep,
		setup:     runningEvil("created"),
		want:      []string{"removed reconcile " + evil + ctr, "removed reconcile " + evil},
		mutations: []string{"rm " + cid(1), "rmi " + evil},
	}, {
		name:      "exited container of a denied image is removed",
		running:   policy.RunningKeep,
		setup:     runningEvil("exited"),
		want:      []string{"removed reconcile " + evil + ctr, "removed reconcile " + evil},
		mutations: []string{"rm " + cid(1), "rmi " + evil},
	}, {
		name:    "audit mode: would-stop and would-remove, nothing done",
		mode:    policy.ModeAudit,
		running: policy.RunningStop,
		setup:   runningEvil("running"),
		want:    []string{"would-stop reconcile " + evil + ctr, "would-remove reconcile " + evil},
	}, {
		name:    "image with an allowed and a denied tag keeps the allowed one",
		running: policy.RunningKeep,
		setup: func(f *fakeDocker) {
			f.addImage(id(1), "reg.example/approved/app:1", "reg.example/approved/app@"+digestB, "evil:1", "docker.io/library/evil@"+digestB)
		},
		want:      []string{"untagged reconcile evil:1"},
		mutations: []string{"rmi evil:1"},
		check: func(t *testing.T, f *fakeDocker) {
			eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:1", "reg.example/approved/app@" + digestB})
		},
	}, {
		name:    "dangling and allowed images are left alone",
		running: policy.RunningStop,
		setup: func(f *fakeDocker) {
			f.addImage(id(1))
			f.addImage(id(2), "reg.example/approved/app:1")
			f.addContainer(Container{ID: cid(2), Image: "reg.example/approved/app:1", ImageID: id(2), State: "running"})
		},
	}, {
		name:    "a container listed by image ID is judged by the name it was created from",
		running: policy.RunningStop,
		setup: func(f *fakeDocker) {
			f.addImage(id(1)) // the old image: its name moved on with a re-pull
			f.addImage(id(2), "reg.example/approved/app:1")
			f.addContainer(Container{ID: cid(1), Image: "reg.example/approved/app:1", ImageID: id(1), State: "running"})
		},
	}, {
		name:    "an image whose only names are denied stays while an allowed container uses it",
		running: policy.RunningStop,
		setup: func(f *fakeDocker) {
			f.addImage(id(1), "evil:1")
			f.addImage(id(2), "reg.example/approved/app:1")
			f.addContainer(Container{ID: cid(1), Image: "reg.example/approved/app:1", ImageID: id(1), State: "running"})
		},
		want: []string{"reported reconcile evil:1" + ctr},
	}, {
		name:    "several denied names: each removed, the last deletes the image",
		running: policy.RunningKeep,
		setup:   func(f *fakeDocker) { f.addImage(id(1), "evil:1", "evil:2", "reg.example/evil/x@"+digestB) },
		want:    []string{"untagged reconcile evil:1", "untagged reconcile evil:2", "removed reconcile reg.example/evil/x@" + digestB},
		// The names side by side, the one that deletes the image last.
		mutations: []string{"rmi evil:1", "rmi evil:2", "rmi reg.example/evil/x@" + digestB},
		anyOrder:  2,
		check: func(t *testing.T, f *fakeDocker) {
			if f.hasImage(id(1)) {
				t.Error("image still there")
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			tt.setup(f)
			mode := tt.mode
			if mode == "" {
				mode = policy.ModeEnforce
			}
			h := startGuard(t, f, testPolicy(t, mode, tt.running))
			h.connected()
			h.settle()
			h.wantRecords(tt.want...)
			got := f.mutationsSoFar()
			slices.Sort(got[:min(tt.anyOrder, len(got))])
			eq(t, "mutations", got, tt.mutations)
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func TestKeptContainerIsLeftAloneUntilItIsGone(t *testing.T) {
	const evil = "reg.example/evil/miner:1"
	f := newFake()
	f.addImage(id(1), evil)
	f.addContainer(Container{ID: cid(1), Image: evil, ImageID: id(1), State: "running"})
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	before := len(h.rec.Records())

	// A restart (restart policy, dockerd restart) is not a new container.
	h.stream.send(t, containerEvent(actionStart, cid(1)), containerEvent(actionStart, cid(1)))
	h.settle()
	if got := h.rec.Records()[before:]; len(got) != 0 {
		t.Fatalf("start of a kept container made records: %q", lines(got))
	}
	if !f.hasContainer(cid(1)) {
		t.Fatal("the kept container was removed")
	}

	// Once the user removes it, its image's denied name goes.
	f.mu.Lock()
	delete(f.ctrs, cid(1))
	f.mu.Unlock()
	h.stream.send(t, containerEvent(actionDestroy, cid(1)))
	h.settle()
	eq(t, "records after destroy", lines(h.rec.Records()[before:]), []string{"removed destroy " + evil})
	if f.hasImage(id(1)) {
		t.Error("the image is still there")
	}

	// A new container from a denied image is removed even under keep.
	f.addImage(id(2), evil)
	h.stream.send(t, f.create(Container{ID: cid(2), Image: evil, ImageID: id(2), State: "created"}))
	h.settle()
	if f.hasContainer(cid(2)) {
		t.Error("a new container of a denied image was kept")
	}
}

func TestReconnectReconcilesAgain(t *testing.T) {
	f := newFake()
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	if n := h.loggedID(enforcer.MessageIDRuntimeConnected); n != 1 {
		t.Fatalf("%d 'connected' log entries, want 1", n)
	}

	seen := time.Unix(1700000000, 123456789)
	ev := f.pull(id(1), "reg.example/approved/app:1", "")
	ev.Time = seen
	h.stream.send(t, ev)
	h.settle()

	// dockerd goes away; while it is away, a denied image arrives unseen.
	f.setDown(true)
	h.stream.errs <- errors.New("unexpected EOF")
	f.addImage(id(2), "reg.example/evil/miner:1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		pings := f.pings
		f.mu.Unlock()
		if pings >= 4 {
			break // it keeps trying, and does not give up
		}
		if time.Now().After(deadline) {
			t.Fatal("the guard does not retry")
		}
		time.Sleep(time.Millisecond)
	}
	f.setDown(false)
	h.connected()
	h.settle()

	h.wantRecords("removed reconcile reg.example/evil/miner:1")
	f.mu.Lock()
	sinces := slices.Clone(f.sinces)
	f.mu.Unlock()
	if len(sinces) != 2 || !sinces[0].IsZero() || !sinces[1].Equal(seen) {
		t.Errorf("subscriptions since %v, want [zero %v]", sinces, seen)
	}
	if n := h.loggedID(enforcer.MessageIDRuntimeDisconnected); n != 1 {
		t.Errorf("%d 'disconnected' log entries, want 1 (one per outage)", n)
	}
	if n := h.loggedID(enforcer.MessageIDRuntimeConnected); n != 2 {
		t.Errorf("%d 'connected' log entries, want 2", n)
	}
	for _, e := range h.logs.AllEntries() {
		if e.Data[enforcer.FieldMessageID] == enforcer.MessageIDRuntimeDisconnected && e.Data["error"] == nil {
			t.Errorf("disconnect logged without its error: %v", e.Data)
		}
	}
}

func TestUnreachableAtStart(t *testing.T) {
	f := newFake()
	f.setDown(true)
	f.addImage(id(1), "reg.example/evil/miner:1")
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	select {
	case <-h.g.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("FirstPass not closed while dockerd is unreachable")
	}
	if len(h.rec.Records()) != 0 {
		t.Fatal("records without dockerd")
	}
	if n := h.loggedID(enforcer.MessageIDRuntimeDisconnected); n != 1 {
		t.Errorf("%d 'unreachable' log entries, want 1", n)
	}

	f.setDown(false)
	h.connected()
	h.settle()
	h.wantRecords("removed reconcile reg.example/evil/miner:1")
}

func TestFirstPassWaitsForTheFirstReconcile(t *testing.T) {
	f := newFake()
	f.listGate = make(chan struct{})
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.stream = f.stream(t)
	select {
	case <-h.g.FirstPass():
		t.Fatal("FirstPass closed before the first reconcile finished")
	case <-time.After(20 * time.Millisecond):
	}
	close(f.listGate)
	select {
	case <-h.g.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("FirstPass not closed after the first reconcile")
	}
}

func TestRequestReconcileAppliesANewPolicyAndCoalesces(t *testing.T) {
	f := newFake()
	f.addImage(id(1), "reg.example/evil/miner:1")
	h := startGuard(t, f, testPolicy(t, policy.ModeAudit, policy.RunningKeep))
	h.connected()
	h.wantRecords("would-remove reconcile reg.example/evil/miner:1")

	// A reload to enforce; the reconcile it asks for is held up while
	// more requests arrive.
	gate := make(chan struct{})
	f.mu.Lock()
	f.listGate = gate
	f.mu.Unlock()
	h.pol.Set(testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.g.RequestReconcile()
	time.Sleep(20 * time.Millisecond) // let it start and block
	for range 5 {
		h.g.RequestReconcile() // never blocks
	}
	f.mu.Lock()
	f.listGate = nil
	f.mu.Unlock()
	close(gate)
	h.waitReconcile()
	h.waitReconcile() // the five requests made while it ran: one more
	select {
	case <-h.reconciles:
		t.Fatal("requests made during a reconcile were not coalesced into one")
	case <-time.After(50 * time.Millisecond):
	}
	h.wantRecords("would-remove reconcile reg.example/evil/miner:1", "removed reconcile reg.example/evil/miner:1")
}

func TestTagBurst(t *testing.T) {
	f := newFake()
	f.addImage(id(1), "reg.example/approved/base:1")
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()

	// Removals block until the whole burst is sent: if the event reader
	// waited for the work, send would fail.
	gate := make(chan struct{})
	f.beforeRemove = func(string) { <-gate }
	var events []Event
	wantNames := []string{"reg.example/approved/base:1"}
	var wantRecs []string
	for i := range 200 {
		name := fmt.Sprintf("reg.example/approved/app:%d", i)
		if i%2 == 1 {
			name = fmt.Sprintf("reg.example/evil/app:%d", i)
			wantRecs = append(wantRecs, "untagged tag "+name)
		} else {
			wantNames = append(wantNames, name)
		}
		events = append(events, f.tag(id(1), name))
	}
	h.stream.send(t, events...)
	close(gate)
	h.settle()
	sort.Strings(wantNames)
	eq(t, "names", f.names(id(1)), wantNames)
	h.wantRecords(wantRecs...)
}

func TestJobsFor(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want []job
	}{
		{"pull by tag", Event{Type: "image", Action: "pull", ID: "localhost:5000/evil/miner:latest"},
			[]job{{Key: jobKey{jobImageName, "localhost:5000/evil/miner:latest"}, Value: jobValue{event: "pull"}}}},
		{"pull by digest", Event{Type: "image", Action: "pull", ID: "busybox@" + digestB},
			[]job{{Key: jobKey{jobImageName, "busybox@" + digestB}, Value: jobValue{event: "pull"}}}},
		{"tag", Event{Type: "image", Action: "tag", ID: id(1), Attributes: map[string]string{"name": "gcr.io/foo/bar:1"}},
			[]job{{Key: jobKey{jobImageID, id(1)}, Value: jobValue{event: "tag", names: []string{"gcr.io/foo/bar:1"}}}}},
		{"tag without a name", Event{Type: "image", Action: "tag", ID: id(1)},
			[]job{{Key: jobKey{jobImageID, id(1)}, Value: jobValue{event: "tag"}}}},
		{"load", Event{Type: "image", Action: "load", ID: id(1)}, []job{{Key: jobKey{jobImageID, id(1)}, Value: jobValue{event: "load"}}}},
		{"import of a bare ID", Event{Type: "image", Action: "import", ID: strings.TrimPrefix(id(1), "sha256:")},
			[]job{{Key: jobKey{jobImageID, id(1)}, Value: jobValue{event: "import"}}}},
		{"untag is ignored", Event{Type: "image", Action: "untag", ID: id(1)}, nil},
		{"delete is ignored", Event{Type: "image", Action: "delete", ID: id(1)}, nil},
		{"container create", Event{Type: "container", Action: "create", ID: cid(1)},
			[]job{{Key: jobKey{jobContainer, cid(1)}, Value: jobValue{event: "create"}}}},
		{"container start", Event{Type: "container", Action: "start", ID: cid(1)},
			[]job{{Key: jobKey{jobContainer, cid(1)}, Value: jobValue{event: "start"}}}},
		{"container destroy", Event{Type: "container", Action: "destroy", ID: cid(1)},
			[]job{{Key: jobKey{jobContainerGone, cid(1)}, Value: jobValue{event: "destroy"}}}},
		{"container commit", Event{Type: "container", Action: "commit", ID: cid(1), Attributes: map[string]string{"imageID": id(2)}},
			[]job{{Key: jobKey{jobImageID, id(2)}, Value: jobValue{event: "commit"}}}},
		{"container die is ignored", Event{Type: "container", Action: "die", ID: cid(1)}, nil},
		{"network is ignored", Event{Type: "network", Action: "create", ID: "n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobsFor(tt.ev); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("jobsFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}
