package authz

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer"
)

// BenchmarkAuthZReq measures one AuthZReq call through the HTTP handler,
// decoding included: dockerd makes one for every API request it serves.
func BenchmarkAuthZReq(b *testing.B) {
	captured := func(name string) string { return capturedCall(b, name) }
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

// pluginCallSamples is how many calls BenchmarkPluginCall measures per
// case and plugin, whatever b.N.
const pluginCallSamples = 5000

// BenchmarkPluginCall measures plugin calls the way dockerd makes them:
// over a unix socket, one keep-alive connection, one call after another.
// Beside each call to pullguard's server, in the same loop, the same call
// goes to a plugin that answers {"Allow":true} without reading it (the
// floor: what any plugin costs). It reports the median and p99 of both and
// their ratio, and handler-ns, pullguard's handler alone (no socket, no
// HTTP parsing). Run with -benchtime 1x.
func BenchmarkPluginCall(b *testing.B) {
	captured := func(name string) string { return capturedCall(b, name) }
	tagURI := "/v1.41/images/" + reg + "/approved/busybox:1.0/tag?repo=" + reg + "%2Fapproved%2Fbusybox&tag=bench"
	type call struct{ path, body string }
	cases := []struct {
		name  string
		calls []call // one sample: these in turn
	}{
		{"unjudged/AuthZReq HEAD _ping", []call{{pathAuthZReq, captured("ping.json")}}},
		{"unjudged/AuthZRes GET inspect (2.5 KB)", []call{{pathAuthZRes, captured("inspect-response.json")}}},
		{"unjudged/AuthZReq+Res GET containers", []call{
			{pathAuthZReq, rawCall("GET", "/v1.41/containers/json?all=1", map[string]string{"User-Agent": ua}, "")},
			{pathAuthZRes, resCall("GET", "/v1.41/containers/json?all=1", 200)}}},
		{"judged/AuthZReq+Res tag allowed", []call{
			{pathAuthZReq, rawCall("POST", tagURI, noBody, "")},
			{pathAuthZRes, resCall("POST", tagURI, 201)}}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, loadPolicy(b, nil))
			f.srv.rep = enforcer.ReporterFunc(func(enforcer.Record) {})
			dir, err := os.MkdirTemp("", "pgbench")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			pg := filepath.Join(dir, "pullguard.sock")
			l, err := Listen(pg)
			if err != nil {
				b.Fatal(err)
			}
			go f.srv.Serve(ctx, l)
			floor := filepath.Join(dir, "floor.sock")
			fl, err := net.Listen("unix", floor)
			if err != nil {
				b.Fatal(err)
			}
			fsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", contentType)
				w.Write([]byte(`{"Allow":true}`))
			})}
			go fsrv.Serve(fl)
			b.Cleanup(func() { fsrv.Close() })
			pgc, flc := unixClient(pg), unixClient(floor)
			one := func(c *http.Client) time.Duration {
				start := time.Now()
				for _, k := range bc.calls {
					resp, err := c.Post("http://plugin"+k.path, "application/json", strings.NewReader(k.body))
					if err != nil {
						b.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if !strings.Contains(string(body), `"Allow":true`) {
						b.Fatalf("%s: %s", k.path, body)
					}
				}
				return time.Since(start)
			}
			n := max(b.N, pluginCallSamples)
			var pgLat, flLat []time.Duration
			for i := range n + 100 {
				p, q := one(pgc), one(flc)
				if i >= 100 {
					pgLat, flLat = append(pgLat, p), append(flLat, q)
				}
			}
			slices.Sort(pgLat)
			slices.Sort(flLat)
			pct := func(s []time.Duration, p int) time.Duration { return s[(p*len(s)+99)/100-1] }
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(pct(pgLat, 50)), "p50-us")
			b.ReportMetric(us(pct(pgLat, 99)), "p99-us")
			b.ReportMetric(us(pct(flLat, 50)), "floor-p50-us")
			b.ReportMetric(us(pct(flLat, 99)), "floor-p99-us")
			b.ReportMetric(float64(pct(pgLat, 50))/float64(pct(flLat, 50)), "p50/floor")

			// The handler alone, on a recorder reused.
			h := f.srv.Handler()
			reqs := make([]*http.Request, len(bc.calls))
			bodies := make([]*strings.Reader, len(bc.calls))
			for i, k := range bc.calls {
				bodies[i] = strings.NewReader(k.body)
				reqs[i] = httptest.NewRequest(http.MethodPost, k.path, bodies[i])
			}
			w := &discardWriter{h: http.Header{}}
			const m = 20000
			start := time.Now()
			for range m {
				for i, k := range bc.calls {
					bodies[i].Reset(k.body)
					reqs[i].Body = io.NopCloser(bodies[i])
					h.ServeHTTP(w, reqs[i])
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/m, "handler-ns")
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// capturedCall is a plugin call dockerd 20.10 made, from testdata.
func capturedCall(tb testing.TB, name string) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "dockerd-20.10", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}
