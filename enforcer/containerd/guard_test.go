package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

const k8s = "k8s.io"

// dg is a sha256 digest made of one repeated hex character.
func dg(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

const basePolicy = `
default: deny
allow:
  - image: registry.local/approved/**
  - image: registry.local/pinned/app
    digests: ["sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"]
deny:
  - image: "**"
    tags: [latest]
`

func mustPolicy(t *testing.T, mode policy.Mode, running policy.Running) *policy.Policy {
	t.Helper()
	// Names alone: provenance_test.go asks where content came from.
	src := fmt.Sprintf("mode: %s\nrunning: %s\nlocal-images: allow\n%s", mode, running, basePolicy)
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// recorder adds this package's views to the shared fake reporter.
type recorder struct{ enforcertest.Recorder }

func (r *recorder) records() []enforcer.Record { return r.Records() }

// summary renders each record as "action namespace subject", subject being
// the container ID or the judged image record's name, sorted.
func (r *recorder) summary() []string {
	var out []string
	for _, rec := range r.records() {
		// Names are judged with the content's digest attached; show the
		// record's name.
		subject := rec.Decision.Input
		if ref, err := policy.ParseRef(subject); err == nil && ref.Tag != "" {
			subject = strings.TrimSuffix(subject, "@"+rec.ImageID)
		}
		if rec.ContainerID != "" {
			subject = rec.ContainerID
		}
		out = append(out, fmt.Sprintf("%s %s %s", rec.Action, rec.Namespace, subject))
	}
	sort.Strings(out)
	return out
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// startGuard runs a guard until the test ends and waits for its first pass.
func startGuard(t *testing.T, f *fakeAPI, src enforcer.PolicySource, opts ...Option) (*Guard, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts = append([]Option{WithBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)
	g := New(f, src, rec, quietLog(), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-g.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("first pass not done")
	}
	return g, rec
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until the guard has had time to act on what it was given.
// Used only where the assertion is that nothing happens.
func settle() { time.Sleep(100 * time.Millisecond) }

// waitSubscribed waits for the guard's next subscription.
func waitSubscribed(t *testing.T, f *fakeAPI) {
	t.Helper()
	select {
	case <-f.subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("guard did not subscribe")
	}
}

func TestReconcileImages(t *testing.T) {
	cases := []struct {
		name     string
		mode     policy.Mode
		images   map[string]string // in k8s.io: name -> target
		wantLeft []string
		want     []string // recorder.summary()
	}{
		{
			name: "disallowed CRI pull: every record removed, image-ID record too",
			mode: policy.ModeEnforce,
			images: map[string]string{
				"registry.local/evil/miner:1.0":              dg('1'),
				"registry.local/evil/miner@" + dg('1'):       dg('1'),
				dg('c'):                                      dg('1'),
				"registry.local/approved/busybox:1.0":        dg('2'),
				"registry.local/approved/busybox@" + dg('2'): dg('2'),
				dg('b'): dg('2'),
			},
			wantLeft: []string{"registry.local/approved/busybox:1.0", "registry.local/approved/busybox@" + dg('2'), dg('b')},
			want: []string{
				"removed k8s.io registry.local/evil/miner:1.0",
				"removed k8s.io registry.local/evil/miner@" + dg('1'),
				"removed k8s.io " + dg('c'),
			},
		},
		{
			name: "content with an allowed and a disallowed name: only the disallowed name goes",
			mode: policy.ModeEnforce,
			images: map[string]string{
				"registry.local/approved/busybox:1.0": dg('2'),
				"registry.local/evil/copy:1.0":        dg('2'),
				dg('b'):                               dg('2'),
			},
			wantLeft: []string{"registry.local/approved/busybox:1.0", dg('b')},
			want:     []string{"untagged k8s.io registry.local/evil/copy:1.0"},
		},
		{
			name: "a denied tag of allowed content is untagged, the content stays",
			mode: policy.ModeEnforce,
			images: map[string]string{
				"registry.local/approved/busybox:1.0":    dg('2'),
				"registry.local/approved/busybox:latest": dg('2'),
			},
			wantLeft: []string{"registry.local/approved/busybox:1.0"},
			want:     []string{"untagged k8s.io registry.local/approved/busybox:latest"},
		},
		{
			name: "digest-pinned rule allows the pinned content under any tag",
			mode: policy.ModeEnforce,
			images: map[string]string{
				"registry.local/pinned/app:v1": dg('d'),
				"registry.local/pinned/app:v2": dg('e'),
			},
			wantLeft: []string{"registry.local/pinned/app:v1"},
			want:     []string{"removed k8s.io registry.local/pinned/app:v2"},
		},
		{
			name:     "record named only by image ID is removed: nothing can allow it",
			mode:     policy.ModeEnforce,
			images:   map[string]string{dg('c'): dg('1')},
			wantLeft: nil,
			want:     []string{"removed k8s.io " + dg('c')},
		},
		{
			name: "audit: nothing deleted, every disallowed record reported",
			mode: policy.ModeAudit,
			images: map[string]string{
				"registry.local/evil/miner:1.0": dg('1'),
				dg('c'):                         dg('1'),
				"registry.local/approved/x:1":   dg('2'),
			},
			wantLeft: []string{"registry.local/approved/x:1", "registry.local/evil/miner:1.0", dg('c')},
			want: []string{
				"would-remove k8s.io registry.local/evil/miner:1.0",
				"would-remove k8s.io " + dg('c'),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			for name, target := range tc.images {
				f.addImage(k8s, name, target)
			}
			_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, tc.mode, policy.RunningKeep)))
			if got := f.imageNames(k8s); !slices.Equal(got, tc.wantLeft) {
				t.Errorf("images left:\n got %q\nwant %q", got, tc.wantLeft)
			}
			if got := rec.summary(); !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got %q\nwant %q", got, tc.want)
			}
			for _, r := range rec.records() {
				if r.Runtime != enforcer.RuntimeContainerd || r.Event != "reconcile" || r.Mode != tc.mode {
					t.Errorf("record %+v: want runtime containerd, event reconcile, mode %s", r, tc.mode)
				}
			}
		})
	}
}

func TestImageRecordCarriesDecision(t *testing.T) {
	f := newFake()
	f.addImage(k8s, "registry.local/evil/miner:1.0", dg('1'))
	_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
	recs := rec.records()
	if len(recs) != 1 {
		t.Fatalf("records: %+v", recs)
	}
	r := recs[0]
	if r.ImageID != dg('1') || r.Namespace != k8s || r.Decision.Allowed ||
		r.Decision.Reference != "registry.local/evil/miner:1.0@"+dg('1') || r.Decision.Reason != "no allow rule matches" {
		t.Errorf("record: %+v", r)
	}
}

// TestCRIPullEvents replays the events of a CRI pull of a disallowed image
// (containerd 1.6: the name, then the image-ID record, an update of the
// name, then the digest name), each arriving after its record was created.
func TestCRIPullEvents(t *testing.T) {
	for _, mode := range []policy.Mode{policy.ModeEnforce, policy.ModeAudit} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFake()
			f.addImage(k8s, "registry.local/approved/busybox:1.0", dg('2'))
			_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, mode, policy.RunningKeep)))
			steps := []struct {
				name, topic string
			}{
				{"registry.local/evil/miner:1.0", TopicImageCreate},
				{dg('c'), TopicImageCreate},
				{"registry.local/evil/miner:1.0", TopicImageUpdate},
				{"registry.local/evil/miner@" + dg('1'), TopicImageCreate},
			}
			for _, s := range steps {
				if s.topic == TopicImageCreate {
					f.addImage(k8s, s.name, dg('1'))
				}
				if !f.emit(Event{Namespace: k8s, Topic: s.topic, Image: s.name}) {
					t.Fatal("no subscription")
				}
			}
			if mode == policy.ModeEnforce {
				eventually(t, "every record of the disallowed image deleted", func() bool {
					return slices.Equal(f.imageNames(k8s), []string{"registry.local/approved/busybox:1.0"})
				})
				settle()
				want := []string{
					"removed k8s.io registry.local/evil/miner:1.0",
					"removed k8s.io registry.local/evil/miner@" + dg('1'),
					"removed k8s.io " + dg('c'),
				}
				if got := rec.summary(); !slices.Equal(got, want) {
					t.Errorf("records (each record reported once):\n got %q\nwant %q", got, want)
				}
				return
			}
			eventually(t, "audit records", func() bool { return len(rec.records()) >= 3 })
			settle()
			if got := f.imageNames(k8s); len(got) != 4 {
				t.Errorf("audit deleted images: left %q", got)
			}
			for _, r := range rec.records() {
				if r.Action != enforcer.WouldRemove {
					t.Errorf("audit record %s for %s", r.Action, r.Decision.Input)
				}
			}
			if len(f.callLog()) != 0 {
				t.Errorf("audit acted: %q", f.callLog())
			}
		})
	}
}

func TestImageEventForAllowedNameKeepsEverything(t *testing.T) {
	f := newFake()
	_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
	f.addImage(k8s, "registry.local/approved/busybox:1.0", dg('2'))
	f.emit(Event{Namespace: k8s, Topic: TopicImageCreate, Image: "registry.local/approved/busybox:1.0"})
	f.addImage(k8s, dg('b'), dg('2'))
	f.emit(Event{Namespace: k8s, Topic: TopicImageCreate, Image: dg('b')})
	settle()
	if got := f.imageNames(k8s); len(got) != 2 {
		t.Errorf("images left %q, want both records", got)
	}
	if len(rec.records()) != 0 {
		t.Errorf("records: %q", rec.summary())
	}
}

func TestContainers(t *testing.T) {
	evil := "registry.local/evil/miner:1.0"
	good := "registry.local/approved/busybox:1.0"
	cases := []struct {
		name      string
		mode      policy.Mode
		running   policy.Running
		container Container
		// from is the content the container's snapshot was made from,
		// when not the image it names.
		from string
		task TaskStatus
		// event is the topic that reports the container; "" leaves it to
		// the reconcile at start.
		event    string
		want     []string // recorder.summary()
		wantLog  []string // actions taken, in order
		wantGone bool
	}{
		{
			name:      "created from a disallowed image (Image field): task killed and deleted, container deleted",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Image: evil},
			task:      TaskRunning,
			event:     TopicTaskStart,
			want:      []string{"stopped k8s.io c1"},
			wantLog:   []string{"kill k8s.io c1", "delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name:      "CRI container: image in the spec annotation, Image field empty",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Annotations: map[string]string{criImageName: evil}},
			task:      TaskRunning,
			event:     TopicTaskStart,
			want:      []string{"stopped k8s.io c1"},
			wantLog:   []string{"kill k8s.io c1", "delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name:      "CRI container: image in the label",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Labels: map[string]string{criImageName: evil}},
			event:     TopicContainerCreate,
			want:      []string{"removed k8s.io c1"},
			wantLog:   []string{"delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name:      "CRI sandbox: pause image in the sandbox annotation",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Annotations: map[string]string{criSandboxImageName: "registry.local/evil/pause:3.9"}},
			task:      TaskRunning,
			event:     TopicTaskStart,
			want:      []string{"stopped k8s.io c1"},
			wantLog:   []string{"kill k8s.io c1", "delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name: "Image field the ID of other content, annotation the user's reference: the content decides",
			mode: policy.ModeEnforce,
			container: Container{ID: "c1", Image: dg('c'), Annotations: map[string]string{criImageName: good},
				Snapshotter: fakeSnapshotter, SnapshotKey: "c1-rootfs"},
			from:  dg('2'),
			task:  TaskRunning,
			event: TopicTaskStart,
		},
		{
			name:      "CRI container named by image ID: judged by the image's names",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Annotations: map[string]string{criImageName: dg('c')}},
			task:      TaskCreated,
			event:     TopicTaskCreate,
			want:      []string{"removed k8s.io c1"},
			wantLog:   []string{"kill k8s.io c1", "delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name:      "CRI container named by the ID of an allowed image is kept",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Annotations: map[string]string{criImageName: dg('b')}},
			task:      TaskRunning,
			event:     TopicTaskStart,
		},
		{
			name:      "container from an allowed image is kept",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1", Image: good},
			task:      TaskRunning,
			event:     TopicTaskStart,
		},
		{
			name:      "container naming no image is left alone",
			mode:      policy.ModeEnforce,
			container: Container{ID: "c1"},
			task:      TaskRunning,
			event:     TopicTaskStart,
		},
		{
			name:      "audit: nothing killed, would-stop reported",
			mode:      policy.ModeAudit,
			container: Container{ID: "c1", Image: evil},
			task:      TaskRunning,
			event:     TopicTaskStart,
			want:      []string{"would-stop k8s.io c1"},
		},
		{
			name:      "reconcile, running: keep: reported, left running",
			mode:      policy.ModeEnforce,
			running:   policy.RunningKeep,
			container: Container{ID: "c1", Image: evil},
			task:      TaskRunning,
			want:      []string{"reported k8s.io c1"},
		},
		{
			name:      "reconcile, running: stop: stopped and removed",
			mode:      policy.ModeEnforce,
			running:   policy.RunningStop,
			container: Container{ID: "c1", Image: evil},
			task:      TaskRunning,
			want:      []string{"stopped k8s.io c1"},
			wantLog:   []string{"kill k8s.io c1", "delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
		{
			name:      "reconcile, running: stop, audit: would-stop",
			mode:      policy.ModeAudit,
			running:   policy.RunningStop,
			container: Container{ID: "c1", Image: evil},
			task:      TaskRunning,
			want:      []string{"would-stop k8s.io c1"},
		},
		{
			name:      "reconcile finds an exited container: removed without a kill",
			mode:      policy.ModeEnforce,
			running:   policy.RunningKeep,
			container: Container{ID: "c1", Image: evil},
			task:      TaskStopped,
			want:      []string{"removed k8s.io c1"},
			wantLog:   []string{"delete-task k8s.io c1", "delete-container k8s.io c1"},
			wantGone:  true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			running := tc.running
			if running == "" {
				running = policy.RunningKeep
			}
			f := newFake()
			// The images CRI names by ID: dg('c') is disallowed content,
			// dg('b') allowed content. For event cases they are added after
			// the first reconcile, which would delete the disallowed one.
			seed := func() {
				f.addImage(k8s, "registry.local/evil/miner:1.0", dg('1'))
				f.addImage(k8s, dg('c'), dg('1'))
				f.addImage(k8s, good, dg('2'))
				f.addImage(k8s, dg('b'), dg('2'))
				f.addImage(k8s, "registry.local/evil/pause:3.9", dg('3'))
			}
			if tc.from != "" {
				f.addSnapshot(k8s, Snapshot{Name: tc.container.SnapshotKey, Parent: fakeChain(tc.from)})
			}
			if tc.event == "" {
				seed()
				f.addContainer(k8s, tc.container, tc.task)
			}
			_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, tc.mode, running)))
			if tc.event != "" {
				seed()
				f.addContainer(k8s, tc.container, tc.task)
				f.emit(Event{Namespace: k8s, Topic: tc.event, ContainerID: tc.container.ID})
			}
			if tc.wantGone {
				eventually(t, "container deleted", func() bool { return !f.hasContainer(k8s, "c1") })
			}
			settle()
			got := slices.DeleteFunc(rec.summary(), func(s string) bool { return !strings.Contains(s, " c1") })
			if !slices.Equal(got, tc.want) {
				t.Errorf("container records:\n got %q\nwant %q", got, tc.want)
			}
			log := slices.DeleteFunc(f.callLog(), func(s string) bool { return strings.HasPrefix(s, "delete-image") })
			if !slices.Equal(log, tc.wantLog) {
				t.Errorf("actions:\n got %q\nwant %q", log, tc.wantLog)
			}
			if !tc.wantGone && !f.hasContainer(k8s, "c1") {
				t.Error("container deleted, want it kept")
			}
			for _, r := range rec.records() {
				if r.ContainerID == "c1" && (r.Runtime != enforcer.RuntimeContainerd || r.Decision.Allowed) {
					t.Errorf("record %+v", r)
				}
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	evil := "registry.local/evil/miner:1.0"
	t.Run("namespace created later is reconciled after a request", func(t *testing.T) {
		f := newFake()
		g, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
		f.addImage("tenant-b", evil, dg('1'))
		g.RequestReconcile()
		eventually(t, "image in the new namespace removed", func() bool { return len(f.imageNames("tenant-b")) == 0 })
		if got := rec.summary(); !slices.Equal(got, []string{"removed tenant-b " + evil}) {
			t.Errorf("records %q", got)
		}
	})
	t.Run("events of a namespace created later are handled", func(t *testing.T) {
		f := newFake()
		startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
		f.addImage("tenant-c", evil, dg('1'))
		f.emit(Event{Namespace: "tenant-c", Topic: TopicImageCreate, Image: evil})
		eventually(t, "image removed", func() bool { return len(f.imageNames("tenant-c")) == 0 })
	})
	t.Run("WithNamespaces guards only those", func(t *testing.T) {
		f := newFake()
		f.addImage("a", evil, dg('1'))
		f.addImage("b", evil, dg('1'))
		startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)), WithNamespaces([]string{"b"}))
		f.addImage("a", "registry.local/evil/other:1", dg('3'))
		f.emit(Event{Namespace: "a", Topic: TopicImageCreate, Image: "registry.local/evil/other:1"})
		settle()
		if len(f.imageNames("a")) != 2 || len(f.imageNames("b")) != 0 {
			t.Errorf("a: %q, b: %q", f.imageNames("a"), f.imageNames("b"))
		}
	})
}

func TestReconnect(t *testing.T) {
	evil := "registry.local/evil/miner:1.0"
	t.Run("stream error: resubscribe, then reconcile what happened meanwhile", func(t *testing.T) {
		f := newFake()
		_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
		waitSubscribed(t, f)
		f.setDown(true)
		f.breakStream(fmt.Errorf("transport is closing: %w", errdefs.ErrUnavailable))
		// Pulled while the guard was away: no event will ever tell.
		f.mu.Lock()
		f.namespace(k8s).images[evil] = dg('1')
		f.mu.Unlock()
		settle() // attempts to reconnect fail while it is down
		f.setDown(false)
		eventually(t, "image removed by the reconcile after reconnecting", func() bool { return len(f.imageNames(k8s)) == 0 })
		if got := rec.summary(); !slices.Equal(got, []string{"removed k8s.io " + evil}) {
			t.Errorf("records %q", got)
		}
		eventually(t, "subscribed again", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.sub != nil
		})
		// Events flow on the new stream.
		f.addImage(k8s, "registry.local/evil/other:1", dg('3'))
		f.emit(Event{Namespace: k8s, Topic: TopicImageCreate, Image: "registry.local/evil/other:1"})
		eventually(t, "event on the new stream handled", func() bool { return len(f.imageNames(k8s)) == 0 })
	})
	t.Run("containerd down at start: first pass ends, guard catches up when it comes", func(t *testing.T) {
		f := newFake()
		f.setDown(true)
		f.addImage(k8s, evil, dg('1'))
		startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep))) // returns after FirstPass
		if len(f.imageNames(k8s)) != 1 {
			t.Fatal("acted while down")
		}
		f.setDown(false)
		eventually(t, "image removed once containerd is up", func() bool { return len(f.imageNames(k8s)) == 0 })
	})
	t.Run("subscribes to the five topics", func(t *testing.T) {
		f := newFake()
		startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
		f.mu.Lock()
		got := slices.Clone(f.topics)
		f.mu.Unlock()
		want := []string{"/images/create", "/images/update", "/containers/create", "/tasks/create", "/tasks/start"}
		if !slices.Equal(got, want) {
			t.Errorf("topics %q, want %q", got, want)
		}
	})
}

func TestPolicyReloadReconciles(t *testing.T) {
	f := newFake()
	f.addImage(k8s, "registry.local/evil/miner:1.0", dg('1'))
	f.addContainer(k8s, Container{ID: "c1", Image: "registry.local/evil/miner:1.0"}, TaskRunning)
	src := enforcertest.NewPolicies(mustPolicy(t, policy.ModeAudit, policy.RunningKeep))
	g, rec := startGuard(t, f, src)
	if len(f.imageNames(k8s)) != 1 || !f.hasContainer(k8s, "c1") {
		t.Fatal("audit acted")
	}
	src.Set(mustPolicy(t, policy.ModeEnforce, policy.RunningStop))
	g.RequestReconcile()
	eventually(t, "enforced after reload", func() bool { return len(f.imageNames(k8s)) == 0 && !f.hasContainer(k8s, "c1") })
	want := []string{"removed k8s.io registry.local/evil/miner:1.0", "reported k8s.io c1", "stopped k8s.io c1", "would-remove k8s.io registry.local/evil/miner:1.0"}
	if got := rec.summary(); !slices.Equal(got, want) {
		t.Errorf("records:\n got %q\nwant %q", got, want)
	}
}

func TestEventsFlowWhileAnActionBlocks(t *testing.T) {
	f := newFake()
	release := make(chan struct{})
	var blocked atomic.Bool
	f.beforeDelete = func(ns, name string) {
		if name == "registry.local/evil/slow:1" {
			blocked.Store(true)
			<-release
		}
	}
	_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
	f.addImage(k8s, "registry.local/evil/slow:1", dg('5'))
	f.emit(Event{Namespace: k8s, Topic: TopicImageCreate, Image: "registry.local/evil/slow:1"})
	eventually(t, "delete blocked", blocked.Load)
	// Hundreds of events are taken off the stream while the delete hangs.
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("registry.local/evil/n%d:1", i)
		f.addImage(k8s, name, dg('6'))
		done := make(chan bool, 1)
		go func() { done <- f.emit(Event{Namespace: k8s, Topic: TopicImageCreate, Image: name}) }()
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("no subscription")
			}
		case <-time.After(2 * time.Second):
			close(release)
			t.Fatalf("event %d not read from the stream while an action blocks", i)
		}
	}
	close(release)
	eventually(t, "all removed", func() bool { return len(f.imageNames(k8s)) == 0 })
	if n := len(rec.records()); n != 301 {
		t.Errorf("%d records, want 301 (one per record)", n)
	}
}

func TestDeleteFailureIsReported(t *testing.T) {
	f := newFake()
	f.addImage(k8s, "registry.local/evil/miner:1.0", dg('1'))
	f.beforeDelete = func(string, string) { f.setDown(true) }
	_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
	recs := rec.records()
	if len(recs) != 1 || recs[0].Action != enforcer.Failed || !errors.Is(recs[0].Err, errdefs.ErrUnavailable) {
		t.Fatalf("records %+v", recs)
	}
	if !strings.Contains(recs[0].Err.Error(), "deleting image registry.local/evil/miner:1.0 in namespace k8s.io") {
		t.Errorf("error %q does not say what failed", recs[0].Err)
	}
}

// Scan reports what a reconcile would do, planned by the reconcile itself,
// and changes nothing.
func TestScan(t *testing.T) {
	f := newFake()
	evil, ok := "registry.local/evil/miner:1.0", "registry.local/approved/app:1"
	f.addImage(k8s, evil, dg('1'))
	f.addImage(k8s, "sha256:"+strings.Repeat("1", 64), dg('1')) // CRI's ID record of the same content
	f.addImage(k8s, ok, dg('2'))
	f.addContainer(k8s, Container{ID: "c1", Image: evil}, TaskRunning)
	f.addContainer(k8s, Container{ID: "c2", Image: ok}, TaskRunning)
	p := mustPolicy(t, policy.ModeAudit, policy.RunningKeep)
	got, err := Scan(context.Background(), f, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, x := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s", x.Kind, x.Action, x.Namespace, x.Reference, x.ContainerID))
	}
	want := []string{
		"container reported k8s.io " + evil + " c1",
		"image removed k8s.io " + evil + " ",
		"image removed k8s.io sha256:" + strings.Repeat("1", 64) + " ",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("findings:\n got %q\nwant %q", lines, want)
	}
	if len(f.imageNames(k8s)) != 3 || !f.hasContainer(k8s, "c1") {
		t.Error("scan acted")
	}
}
