package docker

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// TestScanListsWhatTheReconcileDoes: on the same host, what scan lists is
// exactly what a reconcile in enforce mode then does, action for action.
func TestScanListsWhatTheReconcileDoes(t *testing.T) {
	for _, running := range []policy.Running{policy.RunningKeep, policy.RunningStop} {
		t.Run(string(running), func(t *testing.T) {
			f := newFake()
			f.addImage(id(1), "reg.example/approved/app:1", "evil:1", "evil:2")
			f.addImage(id(2), "reg.example/evil/miner:1")
			f.addImage(id(3), "reg.example/evil/old:1")
			f.addImage(id(4), "reg.example/pinned/app:edge", "reg.example/pinned/app@"+digestA)
			f.addImage(id(5), "reg.example/evil/unused:1", "reg.example/evil/unused:2")
			f.addContainer(Container{ID: cid(2), Name: "miner", Image: "reg.example/evil/miner:1", ImageID: id(2), State: "running"})
			f.addContainer(Container{ID: cid(3), Name: "old", Image: "reg.example/evil/old:1", ImageID: id(3), State: "exited"})
			f.addContainer(Container{ID: cid(1), Name: "ok", Image: "reg.example/approved/app:1", ImageID: id(1), State: "running"})
			p := testPolicy(t, policy.ModeEnforce, running)

			found, err := Scan(context.Background(), f, p, testNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, fd := range found {
				s := fmt.Sprintf("%s %s %s", fd.Kind, fd.Action, fd.Reference)
				if fd.Kind == enforcer.FindingContainer {
					s += " " + fd.ContainerID
				}
				listed = append(listed, s)
			}
			if len(listed) == 0 {
				t.Fatal("scan found nothing")
			}

			var mu sync.Mutex
			var done []string
			rep := enforcer.ReporterFunc(func(r enforcer.Record) {
				mu.Lock()
				defer mu.Unlock()
				s := fmt.Sprintf("image %s %s", r.Action, r.Decision.Input)
				if r.Image == "" && r.ContainerID != "" {
					s = fmt.Sprintf("container %s %s %s", r.Action, r.Decision.Input, r.ContainerID)
				}
				done = append(done, s)
			})
			log := logrus.New()
			log.SetOutput(io.Discard)
			if err := New(f, staticPolicy{p}, rep, log, WithClock(func() time.Time { return testNow })).Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			slices.Sort(listed)
			slices.Sort(done)
			eq(t, "scan's findings against the reconcile's records", listed, done)
		})
	}
}
