package docker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// oldDockerd answers like Debian 12's dockerd 20.10: API 1.41 at most, and
// a 400 for any newer version in the path. It records every request.
type oldDockerd struct {
	mu       sync.Mutex
	requests []string
}

func (d *oldDockerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.requests = append(d.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	d.mu.Unlock()
	w.Header().Set("Api-Version", "1.41")
	if r.URL.Path == "/_ping" {
		w.Write([]byte("OK"))
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1.41")
	if !ok {
		apiErr(w, http.StatusBadRequest, "client version is too new. Maximum supported API version is 1.41")
		return
	}
	switch {
	case r.Method == "GET" && rest == "/images/json":
		writeJSON(w, []map[string]any{{"Id": id(1), "RepoTags": []string{"evil:1"}, "RepoDigests": []string{}}})
	case r.Method == "GET" && rest == "/images/evil:1/json":
		writeJSON(w, map[string]any{"Id": id(1), "RepoTags": []string{"evil:1"}, "RepoDigests": []string{"evil@" + digestB}})
	case r.Method == "DELETE" && rest == "/images/evil:1":
		writeJSON(w, []map[string]string{{"Untagged": "evil:1"}, {"Deleted": id(1)}})
	case r.Method == "DELETE" && rest == "/images/evil:2":
		writeJSON(w, []map[string]string{{"Untagged": "evil:2"}})
	case r.Method == "DELETE" && rest == "/images/evil:3":
		// The other of two side-by-side removals of the last two names
		// deleted the image first.
		apiErr(w, http.StatusInternalServerError, "unrecognized image ID "+id(1))
	case r.Method == "DELETE" && rest == "/images/used:1":
		apiErr(w, http.StatusConflict, `conflict: unable to remove repository reference "used:1" (must force) - container 0123 is using its referenced image 4567`)
	case r.Method == "GET" && rest == "/containers/json":
		writeJSON(w, []map[string]any{{"Id": cid(1), "Names": []string{"/miner"}, "Image": "evil:1", "ImageID": id(1), "State": "running"}})
	case r.Method == "GET" && rest == "/containers/"+cid(1)+"/json":
		writeJSON(w, map[string]any{"Id": cid(1), "Name": "/miner", "Image": id(1),
			"Config": map[string]any{"Image": "evil:1"}, "State": map[string]any{"Status": "running", "Running": true}})
	case r.Method == "POST" && rest == "/containers/"+cid(1)+"/stop":
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "DELETE" && rest == "/containers/"+cid(1):
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "GET" && rest == "/events":
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.Encode(map[string]any{"Type": "image", "Action": "pull", "Actor": map[string]any{"ID": "evil:1", "Attributes": map[string]string{"name": "evil"}},
			"time": 1700000000, "timeNano": int64(1700000000123456789)})
		enc.Encode(map[string]any{"Type": "image", "Action": "tag", "Actor": map[string]any{"ID": id(1), "Attributes": map[string]string{"name": "evil:2"}},
			"time": 1700000001})
		// Then the connection ends, as when dockerd stops.
	default:
		apiErr(w, http.StatusNotFound, "No such object: "+rest)
	}
}

// serveDockerd serves d on a unix socket for the test's length, and returns
// the API of a client of it.
func serveDockerd(t *testing.T, d http.Handler) API {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(d)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	api, err := NewAPI("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func apiErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func TestMobyAPIAgainstDockerd2010(t *testing.T) {
	d := &oldDockerd{}
	api := serveDockerd(t, d)
	ctx := context.Background()
	v, err := api.Ping(ctx)
	if err != nil || v != "1.41" {
		t.Fatalf("Ping = %q, %v; want 1.41", v, err)
	}

	imgs, err := api.ListImages(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].ID != id(1) || !slices.Equal(imgs[0].RepoTags, []string{"evil:1"}) {
		t.Errorf("ListImages = %+v, %v", imgs, err)
	}
	img, err := api.InspectImage(ctx, "evil:1")
	if err != nil || !slices.Equal(img.RepoDigests, []string{"evil@" + digestB}) {
		t.Errorf("InspectImage = %+v, %v", img, err)
	}
	if _, err := api.InspectImage(ctx, "gone:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("InspectImage(gone) error = %v, want ErrNotFound", err)
	}
	if deleted, err := api.RemoveImageName(ctx, "evil:1"); err != nil || !deleted {
		t.Errorf("RemoveImageName(last name) = %v, %v; want deleted", deleted, err)
	}
	if deleted, err := api.RemoveImageName(ctx, "evil:2"); err != nil || deleted {
		t.Errorf("RemoveImageName(other name) = %v, %v; want untagged only", deleted, err)
	}
	if deleted, err := api.RemoveImageName(ctx, "evil:3"); err != nil || deleted {
		t.Errorf("RemoveImageName(last name, image deleted by another removal) = %v, %v; want untagged only", deleted, err)
	}
	if _, err := api.RemoveImageName(ctx, "gone:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveImageName(gone) error = %v, want ErrNotFound", err)
	}
	if _, err := api.RemoveImageName(ctx, "used:1"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "must force") {
		t.Errorf("RemoveImageName(in use) error = %v, want ErrInUse with dockerd's message", err)
	}

	ctrs, err := api.ListContainers(ctx)
	want := Container{ID: cid(1), Name: "miner", Image: "evil:1", ImageID: id(1), State: "running"}
	if err != nil || len(ctrs) != 1 || !reflect.DeepEqual(ctrs[0], want) {
		t.Errorf("ListContainers = %+v, %v; want [%+v]", ctrs, err, want)
	}
	c, err := api.InspectContainer(ctx, cid(1))
	if err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("InspectContainer = %+v, %v; want %+v", c, err, want)
	}
	if err := api.StopContainer(ctx, cid(1)); err != nil {
		t.Errorf("StopContainer: %v", err)
	}
	if err := api.RemoveContainer(ctx, cid(1)); err != nil {
		t.Errorf("RemoveContainer: %v", err)
	}
	if err := api.RemoveContainer(ctx, cid(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveContainer(gone) error = %v, want ErrNotFound", err)
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	evs, errs := api.Events(sctx, time.Unix(1700000000, 5))
	var got []Event
	for len(got) < 2 {
		select {
		case ev := <-evs:
			got = append(got, ev)
		case err := <-errs:
			t.Fatalf("stream ended after %d events: %v", len(got), err)
		}
	}
	if got[0].Type != "image" || got[0].Action != "pull" || got[0].ID != "evil:1" || !got[0].Time.Equal(time.Unix(0, 1700000000123456789)) {
		t.Errorf("event 0 = %+v", got[0])
	}
	if got[1].Action != "tag" || got[1].Attributes["name"] != "evil:2" || !got[1].Time.Equal(time.Unix(1700000001, 0)) {
		t.Errorf("event 1 = %+v", got[1])
	}
	select {
	case err := <-errs:
		if err == nil {
			t.Error("the end of the stream came without an error")
		}
	case <-sctx.Done():
		t.Error("the end of the stream was not reported")
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.requests {
		if !strings.Contains(r, " /v1.41/") && !strings.Contains(r, " /_ping") {
			t.Errorf("request not at the negotiated version 1.41: %s", r)
		}
		if strings.HasPrefix(r, "DELETE /v1.41/images/") && (!strings.Contains(r, "noprune=1") || strings.Contains(r, "force")) {
			t.Errorf("image removal must be without force and without pruning: %s", r)
		}
		if strings.HasPrefix(r, "DELETE /v1.41/containers/") && !strings.Contains(r, "force=1") {
			t.Errorf("container removal must be forced: %s", r)
		}
		if strings.HasPrefix(r, "GET /v1.41/events") {
			q := r[strings.Index(r, "?")+1:]
			for _, want := range []string{"since=1700000000.000000005", "filters="} {
				if !strings.Contains(q, want) {
					t.Errorf("events query %q lacks %q", q, want)
				}
			}
			var f map[string]map[string]bool
			raw := q[strings.Index(q, "filters=")+len("filters="):]
			if i := strings.Index(raw, "&"); i >= 0 {
				raw = raw[:i]
			}
			if err := json.Unmarshal([]byte(unescape(t, raw)), &f); err != nil || !f["type"]["image"] || !f["type"]["container"] || !f["event"]["pull"] || !f["event"]["tag"] {
				t.Errorf("events filters = %v (%v)", f, err)
			}
		}
	}
}

func unescape(t *testing.T, s string) string {
	t.Helper()
	u, err := url.QueryUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// racingDockerd answers the lookup of evil:1's image (its history) only
// once the removal of evil:1 has arrived, or after a second: a client that
// waits for the lookup's answer before it removes the name is a second
// late. The removal keeps the image (it has other names) unless deletes.
type racingDockerd struct {
	removed chan struct{}
	deletes bool
	// lookupLate: the lookup is answered only after the removal is done,
	// and finds the name gone, as when the removal wins the race.
	lookupLate bool
	// alsoUntagged are images another client untagged while the removal
	// was served.
	alsoUntagged []string

	mu     sync.Mutex
	events []map[string]any // untag events, as dockerd keeps them
}

// untagged logs an untag event of image id now, as dockerd's own image
// store does: the event names the image, not the name.
func (d *racingDockerd) untagged(id string) { d.untaggedAs(id, id) }

// untaggedAs logs an untag event of image id now with the name attribute
// name: the containerd image store's, which names the name removed.
func (d *racingDockerd) untaggedAs(id, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.events = append(d.events, map[string]any{"Type": "image", "Action": "untag",
		"Actor": map[string]any{"ID": id, "Attributes": map[string]string{"name": name}},
		"time":  now.Unix(), "timeNano": now.UnixNano()})
}

// pastEvents answers an events request whose since and until are both in
// the past: the untag events kept between them, then the end of the stream.
func (d *racingDockerd) pastEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, until := stampNanos(q.Get("since")), stampNanos(q.Get("until"))
	if since == 0 || until == 0 || until > time.Now().UnixNano() || !strings.Contains(q.Get("filters"), `"untag"`) {
		apiErr(w, http.StatusBadRequest, "want the untag events between two past instants, got "+r.URL.RawQuery)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.events {
		if n := ev["timeNano"].(int64); n >= since && n <= until {
			enc.Encode(ev)
		}
	}
}

// stampNanos reads the events API's "seconds.nanoseconds"; 0 when it is not one.
func stampNanos(s string) int64 {
	sec, nsec, ok := strings.Cut(s, ".")
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(nsec, 10, 64)
	if !ok || len(nsec) != 9 || err1 != nil || err2 != nil {
		return 0
	}
	return a*1e9 + b
}

func (d *racingDockerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", "1.41")
	rest := strings.TrimPrefix(r.URL.Path, "/v1.41")
	switch {
	case r.URL.Path == "/_ping":
		w.Write([]byte("OK"))
	case r.Method == "GET" && rest == "/images/evil:1/history":
		select {
		case <-d.removed:
		case <-time.After(time.Second):
		}
		if d.lookupLate {
			apiErr(w, http.StatusNotFound, "No such image: evil:1")
			return
		}
		writeJSON(w, []map[string]any{{"Id": id(1)}})
	case r.Method == "DELETE" && rest == "/images/evil:1":
		d.untagged(id(1))
		for _, other := range d.alsoUntagged {
			d.untagged(other)
		}
		if d.deletes {
			writeJSON(w, []map[string]string{{"Untagged": "evil:1"}, {"Deleted": id(2)}, {"Deleted": id(3)}})
		} else {
			writeJSON(w, []map[string]string{{"Untagged": "evil:1"}})
		}
		close(d.removed)
	case r.Method == "GET" && rest == "/events":
		d.pastEvents(w, r)
	default:
		apiErr(w, http.StatusNotFound, "No such object: "+rest)
	}
}

// TestRemoveImageNameOfDoesNotWaitForTheLookup: the name's removal goes out
// without waiting for the lookup of its image's ID, and the answer says the
// ID: the lookup's, the deleted image's when the removal deleted it, or,
// when the removal won the race and the image stays, the image dockerd
// logged an untag event of while it served the removal.
func TestRemoveImageNameOfDoesNotWaitForTheLookup(t *testing.T) {
	for _, tt := range []struct {
		name         string
		deletes      bool
		lookupLate   bool
		alsoUntagged []string
		want         string
	}{
		{"the image keeps other names: the lookup's ID", false, false, nil, id(1)},
		{"the image is deleted: the removal's answer says which", true, false, nil, id(2)},
		{"the removal won and the image stays: its untag event says which", false, true, nil, id(1)},
		{"the removal won while the same image lost another name", false, true, []string{id(1)}, id(1)},
		{"the removal won while another image was untagged: not known", false, true, []string{id(4)}, ""},
		{"the removal won and deleted the image", true, true, nil, id(2)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &racingDockerd{removed: make(chan struct{}), deletes: tt.deletes, lookupLate: tt.lookupLate, alsoUntagged: tt.alsoUntagged}
			// An untag event from before the removal is not its.
			d.untagged(id(5))
			time.Sleep(time.Millisecond)
			api := serveDockerd(t, d)
			ctx := context.Background()
			if _, err := api.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, deleted, err := api.RemoveImageNameOf(ctx, "evil:1")
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("took %v: the removal waited for the lookup's answer", took)
			}
			if err != nil || got != tt.want || deleted != tt.deletes {
				t.Errorf("RemoveImageNameOf = %q, %v, %v; want %q, %v", got, deleted, err, tt.want, tt.deletes)
			}
		})
	}
}

// TestUntaggedBetweenOneName: asked about one name (the containerd image
// store's events name it), the read-back takes only that name's untag
// events, in the window asked about, and ignores other images' untags.
func TestUntaggedBetweenOneName(t *testing.T) {
	d := &racingDockerd{removed: make(chan struct{})}
	d.untaggedAs(id(5), "docker.io/library/evil:1") // before the window
	time.Sleep(time.Millisecond)
	from := time.Now()
	d.untaggedAs(id(4), "docker.io/library/other:1")
	d.untaggedAs(id(1), "docker.io/library/evil:1")
	d.untaggedAs(id(3), "docker.io/library/another:2")
	to := time.Now()
	api := serveDockerd(t, d)
	ctx := context.Background()
	if _, err := api.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want string }{
		{"evil:1", id(1)},
		{"docker.io/library/other:1", id(4)},
		{"gone:1", ""},
		{"", ""}, // any name: three images, which is not known
	} {
		if got := api.UntaggedBetween(ctx, tt.name, from, to); got != tt.want {
			t.Errorf("UntaggedBetween(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
