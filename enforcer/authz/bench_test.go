package authz

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/enforcer"
)

// BenchmarkAuthZReq measures one AuthZReq call through the HTTP handler,
// decoding included: dockerd makes one for every API request it serves.
func BenchmarkAuthZReq(b *testing.B) {
	captured := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", "dockerd-20.10", name))
		if err != nil {
			b.Fatal(err)
		}
		return string(data)
	}
	allowedCreate := createBody(reg + "/approved/busybox:1.0")
	benches := []struct {
		name  string
		call  string
		allow bool
	}{
		{"fast path/ping", captured("ping.json"), true},
		{"fast path/inspect", captured("inspect.json"), true},
		{"fast path/POST start", rawCall("POST", "/v1.41/containers/0123456789ab/start", noBody, ""), true},
		{"judged/pull allowed", rawCall("POST", "/v1.41/images/create?fromImage="+reg+"%2Fapproved%2Fbusybox&tag=1.0", noBody, ""), true},
		{"judged/pull denied", captured("pull.json"), false},
		{"judged/pull all tags", captured("pull-all-tags.json"), true},
		{"judged/create allowed", rawCall("POST", "/v1.41/containers/create", jsonHeaders(allowedCreate), allowedCreate), true},
		{"judged/create denied", captured("containers-create.json"), false},
		{"judged/tag denied", captured("tag.json"), false},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, loadPolicy(b, nil))
			// The daemon's reporter hands records to the journal; keeping
			// them all would measure slice growth.
			f.srv.rep = enforcer.ReporterFunc(func(enforcer.Record) {})
			h := f.srv.Handler()
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, pathAuthZReq, strings.NewReader(bc.call)))
				if got := strings.Contains(w.Body.String(), `"Allow":true`); got != bc.allow {
					b.Fatalf("answer %s", w.Body)
				}
			}
		})
	}
}
