package authz

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// The image index spares judged requests the nested Docker lookup, and is
// forgotten whenever the image store may have changed: a request that
// changes names (before and after dockerd serves it) or an image event.
func TestImageIndex(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	b := createBody(reg + "/approved/busybox:1.0")
	create := rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b)
	allowed := func(step string) {
		t.Helper()
		if res := f.call(t, pathAuthZReq, create); !res.Allow {
			t.Fatalf("%s: refused %q", step, res.Msg)
		}
	}
	allowed("first")
	allowed("second")
	if n := f.images.callCount(); n != 1 {
		t.Fatalf("%d lookups for two requests about one image, want 1", n)
	}

	// The image loses its allowed name (docker rmi): the index must not
	// remember it.
	f.images.mu.Lock()
	f.images.images[reg+"/approved/busybox:1.0"] = LocalImage{ID: evilID, Names: []string{reg + "/evil/miner:1.0"}}
	f.images.mu.Unlock()
	rmi := rawCall("DELETE", "/v1.41/images/"+reg+"/approved/busybox:2.0", noBody, "")
	f.call(t, pathAuthZReq, rmi)
	f.call(t, pathAuthZRes, rmi)
	if res := f.call(t, pathAuthZReq, create); res.Allow {
		t.Fatal("allowed from a stale index after the image store changed")
	}
	if n := f.images.callCount(); n != 2 {
		t.Errorf("%d lookups, want 2 (the index was forgotten once)", n)
	}

	// Reads do not forget it; an image event does.
	get := rawCall("GET", "/v1.41/images/json", nil, "")
	f.call(t, pathAuthZReq, get)
	f.call(t, pathAuthZRes, get)
	f.call(t, pathAuthZReq, create)
	if n := f.images.callCount(); n != 2 {
		t.Errorf("%d lookups after a read, want still 2", n)
	}
	f.srv.ImagesChanged()
	f.call(t, pathAuthZReq, create)
	if n := f.images.callCount(); n != 3 {
		t.Errorf("%d lookups after an image event, want 3", n)
	}
}

func TestChangesImages(t *testing.T) {
	for uri, want := range map[string]bool{
		"POST /v1.41/images/create?fromImage=x": true,
		"DELETE /v1.41/images/x":                true,
		"POST /images/x/tag?repo=y":             true,
		"POST /v1.41/build?t=x":                 true,
		"POST /v1.41/commit?container=c":        true,
		"POST /session":                         true,
		"GET /v1.41/images/json":                false,
		"HEAD /_ping":                           false,
		"POST /v1.41/containers/create":         false,
		"POST /v1.41/containers/abc/start":      false,
		"POST /v1.41/images/load?quiet=1":       true,
		"DELETE /v1.41/containers/abc?force=1":  false,
	} {
		method, u, _ := strings.Cut(uri, " ")
		if got := changesImages(method, u); got != want {
			t.Errorf("%s: %v, want %v", uri, got, want)
		}
	}
}

// unsigned is evidence that denies one image.
type unsigned struct{ id string }

func (u unsigned) Check(_ context.Context, img enforcer.ImageSubject, _ policy.ImageDecision) *policy.Decision {
	if img.ID != u.id {
		return nil
	}
	return &policy.Decision{Input: img.Names[0], Reason: "no valid signature"}
}

// Evidence refuses a create the policy allows by the image's names.
func TestEvidenceRefusesCreate(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.srv = New(f.policies, f.images, f.rec, log, WithEvidence(unsigned{okID}))
	b := createBody(reg + "/approved/busybox:1.0")
	res := f.call(t, pathAuthZReq, rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b))
	if res.Allow || !strings.Contains(res.Msg, "no valid signature") {
		t.Errorf("answer %+v, want a refusal saying why", res)
	}
}
