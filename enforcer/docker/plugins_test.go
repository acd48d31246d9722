package docker

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// The fake's plugins: what ListPlugins answers, DisablePlugin and
// RemovePlugin change ("disable-plugin ID", "rm-plugin ID" mutations).

func (f *fakeDocker) addPlugin(pl Plugin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plugins = append(f.plugins, pl)
}

func (f *fakeDocker) ListPlugins(ctx context.Context) ([]Plugin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("list-plugins"); err != nil {
		return nil, err
	}
	return slices.Clone(f.plugins), nil
}

func (f *fakeDocker) DisablePlugin(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.plugins {
		if f.plugins[i].ID == id {
			f.mutations = append(f.mutations, "disable-plugin "+id)
			f.plugins[i].Enabled = false
			return nil
		}
	}
	return fmt.Errorf("%w: plugin %s", ErrNotFound, id)
}

func (f *fakeDocker) RemovePlugin(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.plugins {
		if f.plugins[i].ID == id {
			f.mutations = append(f.mutations, "rm-plugin "+id)
			f.plugins = slices.Delete(f.plugins, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("%w: plugin %s", ErrNotFound, id)
}

// TestPlugins: the reconcile and plugin events disable and remove a plugin
// whose reference or local name is not allowed, and a plugin created on the
// host under local-images: deny; an allowed plugin is never touched.
func TestPlugins(t *testing.T) {
	ok := Plugin{ID: "p-ok", Name: "reg.example/approved/plug:1", Reference: "reg.example/approved/plug:1", Enabled: true}
	evil := Plugin{ID: "p-evil", Name: "reg.example/evil/plug:1", Reference: "reg.example/evil/plug:1", Enabled: true}
	alias := Plugin{ID: "p-alias", Name: "evilalias:latest", Reference: "reg.example/approved/plug:1", Enabled: false}
	upgraded := Plugin{ID: "p-up", Name: "reg.example/approved/up:1", Reference: "reg.example/evil/plug:2", Enabled: false}
	created := Plugin{ID: "p-created", Name: "reg.example/approved/made:1", Reference: "reg.example/approved/made:1"}

	f := newFake()
	f.addPlugin(ok)
	f.addPlugin(evil)
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	eq(t, "after the reconcile", f.mutationsSoFar(), []string{"disable-plugin p-evil", "rm-plugin p-evil"})

	for _, pl := range []Plugin{alias, upgraded} {
		f.addPlugin(pl)
		h.stream.send(t, Event{Type: typePlugin, Action: actionPull, ID: pl.Reference, Attributes: map[string]string{"name": pl.Name}})
	}
	h.settle()
	eq(t, "after the pulls", slices.Sorted(slices.Values(f.mutationsSoFar())),
		[]string{"disable-plugin p-evil", "rm-plugin p-alias", "rm-plugin p-evil", "rm-plugin p-up"})

	// testPolicy says local-images: allow: a created plugin is judged by its name.
	f.addPlugin(created)
	h.stream.send(t, Event{Type: typePlugin, Action: actionCreate, ID: created.ID, Attributes: map[string]string{"name": created.Name}})
	h.settle()
	if got := f.mutationsSoFar(); len(got) != 4 {
		t.Errorf("a plugin created under an allowed name, local-images: allow: mutations %q", got)
	}
	h.pol.Set(mustProvenancePolicy(t))
	h.stream.send(t, Event{Type: typePlugin, Action: actionCreate, ID: created.ID, Attributes: map[string]string{"name": created.Name}})
	h.settle()
	if got := f.mutationsSoFar(); !slices.Contains(got, "rm-plugin p-created") {
		t.Errorf("a plugin created on the host under local-images: deny stayed: mutations %q", got)
	}

	for _, m := range f.mutationsSoFar() {
		if m == "disable-plugin p-ok" || m == "rm-plugin p-ok" {
			t.Errorf("the allowed plugin was touched: %s", m)
		}
	}
	var plugins []string
	for _, r := range h.rec.Records() {
		if r.Action != enforcer.Removed || r.Plugin == "" {
			t.Errorf("record %+v, want removed with a plugin", r)
		}
		plugins = append(plugins, r.Plugin)
	}
	slices.Sort(plugins)
	eq(t, "records' plugins", plugins, []string{"reg.example/approved/made:1", "reg.example/approved/plug:1", "reg.example/evil/plug:1", "reg.example/evil/plug:2"})
}

func mustProvenancePolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("mode: enforce\nallow:\n  - image: reg.example/approved/**\n")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
