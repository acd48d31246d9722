package policy

import (
	"fmt"
	"testing"
)

// TestRefCacheKeepsWhatComesBack: a reference is kept from its second
// sighting on, a one-off is not, and either way the answer is the
// parser's.
func TestRefCacheKeepsWhatComesBack(t *testing.T) {
	c := newRefCache(8)
	for i := 0; i < 3; i++ {
		r, err := c.parse("nginx:1.25")
		if err != nil || r.String != "docker.io/library/nginx:1.25" {
			t.Fatalf("sighting %d: %+v, %v", i+1, r, err)
		}
		if kept := len(c.gen.cur) == 1; kept != (i > 0) {
			t.Fatalf("after sighting %d: %d kept", i+1, len(c.gen.cur))
		}
	}
	if _, err := c.parse("Bad Ref"); err == nil {
		t.Fatal("an invalid reference parsed")
	}
	if _, err := c.parse("Bad Ref"); err == nil {
		t.Fatal("an invalid reference parsed the second time")
	}
	// A stream of distinct references keeps nothing and stays correct.
	c = newRefCache(8)
	for i := 0; i < 100; i++ {
		in := fmt.Sprintf("ghcr.io/acme/app%d:1.%d", i, i)
		if r, err := c.parse(in); err != nil || r.String != in {
			t.Fatalf("%s: %+v, %v", in, r, err)
		}
	}
	if len(c.gen.cur) > 2 { // a fingerprint may collide
		t.Fatalf("%d one-off references kept", len(c.gen.cur))
	}
}
