package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/client"
)

// fakeDockerd answers image inspect the way dockerd 20.10 does: the image
// as JSON, or 404 with {"message": "No such image: ..."}.
func fakeDockerd(t *testing.T, images map[string]string) *client.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/v1.41/images/")
		name = strings.TrimSuffix(name, "/json")
		w.Header().Set("Content-Type", "application/json")
		body, ok := images[name]
		switch {
		case name == "broken":
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"message":"layer store is on fire"}`))
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"No such image: ` + name + `"}`))
		default:
			w.Write([]byte(body))
		}
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithAPIVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDockerResolver(t *testing.T) {
	docker := fakeDockerd(t, map[string]string{
		"127.0.0.1:5000/evil/miner:1.0": `{"Id":"` + evilID + `","RepoTags":["127.0.0.1:5000/evil/miner:1.0","127.0.0.1:5000/evil/miner:latest"],"RepoDigests":["127.0.0.1:5000/evil/miner@sha256:` + strings.Repeat("a", 64) + `"]}`,
		"dead00000000":                  `{"Id":"` + blankID + `","RepoTags":[],"RepoDigests":[]}`,
		"old":                           `{"Id":"` + blankID + `","RepoTags":["<none>:<none>"],"RepoDigests":["<none>@<none>"]}`,
	})
	r := NewDockerResolver(docker)
	tests := []struct {
		ref     string
		want    LocalImage
		found   bool
		wantErr string
	}{
		{ref: "127.0.0.1:5000/evil/miner:1.0", found: true, want: LocalImage{ID: evilID, Names: []string{
			"127.0.0.1:5000/evil/miner:1.0", "127.0.0.1:5000/evil/miner:latest", "127.0.0.1:5000/evil/miner@sha256:" + strings.Repeat("a", 64)}}},
		{ref: "dead00000000", found: true, want: LocalImage{ID: blankID, Names: []string{}}},
		{ref: "old", found: true, want: LocalImage{ID: blankID, Names: []string{}}},
		{ref: "nginx:1.25", found: false},
		{ref: "broken", wantErr: `inspecting image "broken": `},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			img, found, err := r.ResolveImage(context.Background(), tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "layer store is on fire") {
					t.Fatalf("err = %v, want %q with dockerd's message", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.found || !reflect.DeepEqual(img, tc.want) {
				t.Errorf("got %+v, %v; want %+v, %v", img, found, tc.want, tc.found)
			}
		})
	}
}
