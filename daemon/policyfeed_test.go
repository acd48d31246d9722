package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/policy"
)

// feedFunc is a PolicyFeed that runs a function.
type feedFunc func(ctx context.Context, load func(string, logrus.Fields) error) error

func (f feedFunc) Run(ctx context.Context, load func(string, logrus.Fields) error) error {
	return f(ctx, load)
}

// A feed's policies are loaded like changed files, carry their origin
// into the journal, and one that does not load leaves the policy in force
// and its path as they were.
func TestPolicyFeed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name, "policy.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, content)
		return p
	}
	first, second, broken := write("a", policyV("v1")), write("b", policyV("v2")), write("c", invalidPolicy)
	origin := func(digest string) logrus.Fields { return logrus.Fields{FieldPolicyDigest: digest} }

	log, hook := logtest.NewNullLogger()
	type result struct{ err1, err2 error }
	results := make(chan result, 1)
	reloads := make(chan *policy.Policy, 2)
	w, err := NewPolicyWatcher(PolicyWatcherConfig{
		Path: first, Log: log, Origin: origin("sha256:a"),
		OnReload: func(p *policy.Policy) { reloads <- p },
		Feed: feedFunc(func(ctx context.Context, load func(string, logrus.Fields) error) error {
			results <- result{load(broken, origin("sha256:c")), load(second, origin("sha256:b"))}
			<-ctx.Done()
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := hook.LastEntry(); e.Data[FieldMessageID] != MessageIDPolicyLoaded || e.Data[FieldPolicyDigest] != "sha256:a" {
		t.Errorf("start entry %v, want policy loaded with PULLGUARD_POLICY_DIGEST=sha256:a", e.Data)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	var r result
	select {
	case r = <-results:
	case <-time.After(5 * time.Second):
		t.Fatal("the feed was not run")
	}
	if r.err1 == nil || r.err2 != nil {
		t.Fatalf("load(broken) = %v, load(valid) = %v", r.err1, r.err2)
	}
	if got := marker(<-reloads); got != "v2+1" {
		t.Errorf("reloaded %s, want v2+1", got)
	}
	var invalid, loaded *logrus.Entry
	for _, e := range hook.AllEntries() {
		switch e.Data[FieldMessageID] {
		case MessageIDPolicyInvalid:
			invalid = e
		case MessageIDPolicyLoaded:
			loaded = e
		}
	}
	if invalid == nil || invalid.Data[FieldPolicyDigest] != "sha256:c" || invalid.Data[FieldPolicyPath] != broken {
		t.Errorf("no policy-invalid entry for the broken artifact: %+v", invalid)
	}
	if loaded.Data[FieldPolicyDigest] != "sha256:b" || loaded.Data[FieldTrigger] != TriggerPolicySource || loaded.Data[FieldPolicyPath] != second {
		t.Errorf("policy loaded entry %v, want the second artifact's, triggered by the policy source", loaded.Data)
	}
	// A reload request re-reads the path in force, not the rejected one.
	if err := w.Reload(); err != nil {
		t.Errorf("reload after the feed: %v", err)
	}
}
