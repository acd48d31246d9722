package provenance

import (
	"context"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// TestCacheLifetimes: a yes is kept for long, a no briefly, an error not at
// all.
func TestCacheLifetimes(t *testing.T) {
	reg := enforcertest.NewRegistry([2]string{"r/a", d1})
	now := time.Unix(0, 0)
	c := New(reg).WithClock(func() time.Time { return now })
	ctx := context.Background()
	for range 2 {
		if ok, err := c.Served(ctx, "r/a", d1); !ok || err != nil {
			t.Fatalf("Served = %v, %v", ok, err)
		}
		if ok, err := c.Served(ctx, "r/b", d1); ok || err != nil {
			t.Fatalf("Served = %v, %v", ok, err)
		}
	}
	if n := reg.Asks(); n != 2 {
		t.Errorf("%d asks, want 2 (answers cached)", n)
	}
	now = now.Add(NotServedTTL + time.Second)
	c.Served(ctx, "r/a", d1)
	c.Served(ctx, "r/b", d1)
	if n := reg.Asks(); n != 3 {
		t.Errorf("%d asks, want 3 (only the no expired)", n)
	}
	reg.SetDown(true)
	for range 2 {
		if _, err := c.Served(ctx, "r/c", d1); err == nil {
			t.Errorf("no error while the registry is down")
		}
	}
	if n := reg.Asks(); n != 5 {
		t.Errorf("%d asks, want 5 (errors not cached)", n)
	}
}

// TestPassAsksOnce: within one pass a question the registry failed to
// answer is not asked again; the next pass asks again.
func TestPassAsksOnce(t *testing.T) {
	reg := enforcertest.NewRegistry()
	reg.SetDown(true)
	c := New(reg)
	ctx := WithPass(context.Background())
	for range 3 {
		if _, err := c.Served(ctx, "r/a", d1); err == nil {
			t.Fatal("no error from a registry that is down")
		}
	}
	if n := reg.Asks(); n != 1 {
		t.Errorf("%d asks in one pass, want 1", n)
	}
	if _, err := c.Served(WithPass(context.Background()), "r/a", d1); err == nil || reg.Asks() != 2 {
		t.Errorf("the next pass did not ask again: %v, %d asks", err, reg.Asks())
	}
}
