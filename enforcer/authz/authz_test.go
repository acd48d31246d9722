package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// reg is the registry the captured dockerd calls in testdata/ name.
const reg = "127.0.0.1:43503"

var (
	evilID  = "sha256:9f477abac9c894f2348453f7a1563e4331f45addb36bd592917c6a1de447209f"
	okID    = "sha256:18c79d2bf870" + strings.Repeat("0", 52)
	mixedID = "sha256:5ca1ab1e0000" + strings.Repeat("1", 52)
	blankID = "sha256:dead00000000" + strings.Repeat("2", 52)
)

// localImages is the fake Docker image store the tests resolve against,
// keyed by what Docker would resolve to each image.
func localImages() map[string]LocalImage {
	evil := LocalImage{ID: evilID, Names: []string{reg + "/evil/miner:1.0"}}
	ok := LocalImage{ID: okID, Names: []string{reg + "/approved/busybox:1.0", reg + "/approved/busybox@sha256:" + strings.Repeat("5", 64)}}
	mixed := LocalImage{ID: mixedID, Names: []string{reg + "/evil/miner:2.0", reg + "/approved/busybox:2.0"}}
	blank := LocalImage{ID: blankID}
	return map[string]LocalImage{
		reg + "/evil/miner:1.0":       evil,
		reg + "/evil/miner":           evil, // as dockerd resolves a name without tag: :latest is not it, but the fake need not care
		"9f477abac9c8":                evil,
		evilID:                        evil,
		reg + "/approved/busybox:1.0": ok,
		"18c79d2bf870":                ok,
		reg + "/evil/miner:2.0":       mixed,
		"dead00000000":                blank,
		reg + "/approved/busybox@sha256:9f477abac9c894f2348453f7a1563e4331f45addb36bd592917c6a1de447209f": evil,
	}
}

type fakeImages struct {
	mu     sync.Mutex
	images map[string]LocalImage
	errs   map[string]error
	calls  int
	// wait, when set, is received from before answering: a slow dockerd.
	wait chan struct{}
}

func (f *fakeImages) ResolveImage(ctx context.Context, ref string) (LocalImage, bool, error) {
	f.mu.Lock()
	f.calls++
	img, ok := f.images[ref]
	err := f.errs[ref]
	wait := f.wait
	f.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return LocalImage{}, false, ctx.Err()
		}
	}
	return img, ok, err
}

func (f *fakeImages) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// records adds this package's view to the shared fake reporter.
type records struct{ enforcertest.Recorder }

func (r *records) all() []enforcer.Record { return r.Records() }

// loadPolicy parses testdata/policy.yaml under the name policy.yaml, with
// edit applied to its text.
func loadPolicy(t testing.TB, edit func(string) string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(text)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type fixture struct {
	srv      *Server
	policies *enforcertest.Policies
	images   *fakeImages
	rec      *records
}

var testNow = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

func newFixture(t testing.TB, p *policy.Policy) *fixture {
	t.Helper()
	f := &fixture{policies: enforcertest.NewPolicies(nil), images: &fakeImages{images: localImages(), errs: map[string]error{
		reg + "/approved/flaky:1": errors.New("connection reset by peer"),
	}}, rec: &records{}}
	f.policies.Set(p)
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.srv = New(f.policies, f.images, f.rec, log)
	f.srv.now = func() time.Time { return testNow }
	return f
}

// call posts one raw plugin call to the handler and decodes the answer.
func (f *fixture) call(t testing.TB, path, body string) Response {
	t.Helper()
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	if w.Code != http.StatusOK {
		t.Fatalf("%s: status %d: %s", path, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != contentType {
		t.Errorf("%s: Content-Type %q, want %q", path, ct, contentType)
	}
	var res Response
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatalf("%s: answer %q: %v", path, w.Body, err)
	}
	return res
}

// rawCall is an AuthZReq call as dockerd encodes it: omitempty fields, the
// body in base64, & escaped as \u0026.
func rawCall(method, uri string, headers map[string]string, body string) string {
	m := map[string]any{"RequestMethod": method, "RequestUri": uri}
	if headers != nil {
		m["RequestHeaders"] = headers
	}
	if body != "" {
		m["RequestBody"] = base64.StdEncoding.EncodeToString([]byte(body))
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

const ua = "Docker-Client/28.2.2 (linux)"

// The headers of a request without a body, as the Docker CLI sends it.
var noBody = map[string]string{"Content-Length": "0", "User-Agent": ua}

func jsonHeaders(body string) map[string]string {
	return map[string]string{"Content-Type": "application/json", "Content-Length": itoa(len(body)), "User-Agent": ua}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func createBody(image string) string {
	return `{"Hostname":"","Cmd":["true"],"Image":"` + image + `","HostConfig":{"NetworkMode":"default"}}`
}

const defaultDeny = " (default: deny, policy.yaml:3)"

const withheld = "it may carry a body that Docker did not forward to the authorization plugin " +
	"(Docker forwards only application/json bodies under 1 MiB; a request without a body must send Content-Length: 0), " +
	"so what it asks for cannot be checked"

type authzCase struct {
	name string
	call string
	// allow is the expected verdict; msg the expected Msg of a refusal,
	// or msgPrefix when the rest is the reference parser's wording.
	allow     bool
	msg       string
	msgPrefix string
	// ref is the denied reference in the record (Decision.Reference, or
	// Decision.Input when the reference did not parse); imageID its image.
	ref     string
	imageID string
	// failed: the request could not be judged; it is refused and
	// journaled as failed, with the error.
	failed bool
}

func TestAuthZReq(t *testing.T) {
	create := func(image string) string {
		b := createBody(image)
		return rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b)
	}
	service := func(op, image string) string {
		b := `{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"` + image + `","Args":["sleep","300"]}},"Mode":{"Replicated":{"Replicas":1}}}`
		return rawCall("POST", "/v1.41/services/"+op, jsonHeaders(b), b)
	}
	pull := func(query string) string { return rawCall("POST", "/v1.41/images/create?"+query, noBody, "") }
	tag := func(uri string) string { return rawCall("POST", uri, noBody, "") }
	build := func(query string) string {
		return rawCall("POST", "/v1.41/build?"+query, map[string]string{"Content-Type": "application/x-tar", "User-Agent": ua}, "")
	}
	evilPull := reg + "/evil/miner:1.0 is not allowed: no allow rule matches" + defaultDeny
	groups := map[string][]authzCase{
		"pull": {
			{name: "allowed", call: pull("fromImage=" + reg + "%2Fapproved%2Fbusybox&tag=1.0"), allow: true},
			{name: "denied", call: pull("fromImage=" + reg + "%2Fevil%2Fminer&tag=1.0"),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "no version prefix", call: rawCall("POST", "/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "old version prefix", call: rawCall("POST", "/v1.24/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "percent-encoded path", call: rawCall("POST", "/v1.41/images/%63reate?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "unclean path", call: rawCall("POST", "//v1.41//images/./create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "absolute-form URI", call: rawCall("POST", "http://docker/v1.41/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "lower-case method", call: rawCall("post", "/v1.41/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "tag inside fromImage", call: pull("fromImage=" + reg + "/evil/miner:1.0"),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "tag parameter replaces the tag in fromImage", call: pull("fromImage=nginx:1.25&tag=latest"),
				msg: "pullguard: docker.io/library/nginx:latest is not allowed: no allow rule matches" + defaultDeny, ref: "docker.io/library/nginx:latest"},
			{name: "familiar name allowed", call: pull("fromImage=nginx&tag=1.25"), allow: true},
			{name: "digest as tag", call: pull("fromImage=" + reg + "/evil/miner&tag=sha256:" + strings.Repeat("a", 64)),
				msg: "pullguard: " + reg + "/evil/miner@sha256:" + strings.Repeat("a", 64) + " is not allowed: no allow rule matches" + defaultDeny,
				ref: reg + "/evil/miner@sha256:" + strings.Repeat("a", 64)},
			{name: "digest in fromImage", call: pull("fromImage=" + reg + "/approved/busybox@sha256:" + strings.Repeat("a", 64)), allow: true},
			{name: "deny rule beats allow rule", call: pull("fromImage=" + reg + "/approved/experimental&tag=1"),
				msg: "pullguard: " + reg + "/approved/experimental:1 is not allowed: matches deny rule " + reg + "/approved/experimental (policy.yaml:11)",
				ref: reg + "/approved/experimental:1"},
			{name: "invalid reference", call: pull("fromImage=Evil/Miner&tag=1"),
				msgPrefix: "pullguard: Evil/Miner:1 is not allowed: invalid reference: ", ref: "Evil/Miner:1"},
			{name: "invalid tag", call: pull("fromImage=nginx&tag=a%20b"),
				msgPrefix: "pullguard: nginx:a b is not allowed: invalid reference: ", ref: "nginx:a b"},
			{name: "malformed query", call: pull("fromImage=nginx;tag=1.25"),
				msgPrefix: "pullguard: POST /v1.41/images/create is not allowed: its query string is malformed: ", ref: "POST /v1.41/images/create"},
			{name: "repeated fromImage", call: pull("fromImage=nginx&fromImage=" + reg + "/evil/miner&tag=1.25"),
				msg: "pullguard: POST /v1.41/images/create is not allowed: it gives the parameter fromImage 2 times", ref: "POST /v1.41/images/create"},
		},
		"pull all tags": {
			// docker pull -a sends fromImage without tag.
			{name: "repository allowed for any tag", call: pull("fromImage=registry.example.com/team/tool"), allow: true},
			{name: "trailing colon", call: pull("fromImage=registry.example.com/team/tool:"), allow: true},
			{name: "a deny rule for some tags", call: pull("fromImage=registry.example.com/team/app"),
				msg: "pullguard: a pull of every tag of registry.example.com/team/app is allowed only if every tag is: " +
					"registry.example.com/team/app:debug-0 is not allowed: matches deny rule registry.example.com/team/app tags [debug-[0-9]* latest] (SEC-12) (policy.yaml:12)",
				ref: "registry.example.com/team/app:debug-0"},
			{name: "the allow rule lists tags", call: pull("fromImage=nginx"),
				msg: "pullguard: a pull of every tag of docker.io/library/nginx is allowed only if every tag is: " +
					"docker.io/library/nginx is not allowed: no allow rule matches" + defaultDeny,
				ref: "docker.io/library/nginx"},
			{name: "no rule", call: pull("fromImage=" + reg + "/evil/miner"),
				msg: "pullguard: a pull of every tag of " + reg + "/evil/miner is allowed only if every tag is: " +
					reg + "/evil/miner is not allowed: no allow rule matches" + defaultDeny,
				ref: reg + "/evil/miner"},
		},
		"pull parameters in the body": {
			{name: "urlencoded body not forwarded", call: rawCall("POST", "/v1.41/images/create",
				map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "40"}, ""),
				msg: "pullguard: POST /v1.41/images/create is not allowed: " + withheld, ref: "POST /v1.41/images/create"},
			{name: "chunked body not forwarded", call: rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/approved/busybox&tag=1.0",
				map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, ""),
				msg: "pullguard: POST /v1.41/images/create is not allowed: " + withheld, ref: "POST /v1.41/images/create"},
			{name: "no Content-Length and no body", call: rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/approved/busybox&tag=1.0",
				map[string]string{"User-Agent": "curl/7.88.1"}, ""),
				msg: "pullguard: POST /v1.41/images/create is not allowed: " + withheld, ref: "POST /v1.41/images/create"},
			// The plugin sees the last Content-Type, dockerd's form parser the first:
			// a forwarded body is read as a form whatever it says.
			{name: "forwarded body read as a form", call: rawCall("POST", "/v1.41/images/create",
				map[string]string{"Content-Type": "application/json", "Content-Length": "41"}, "fromImage="+reg+"%2Fevil%2Fminer&tag=1.0"),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "forwarded body allowed", call: rawCall("POST", "/v1.41/images/create",
				map[string]string{"Content-Type": "application/json"}, "fromImage="+reg+"%2Fapproved%2Fbusybox&tag=1.0"), allow: true},
			{name: "body and query both give fromImage", call: rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/approved/busybox&tag=1.0",
				map[string]string{"Content-Type": "application/json"}, "fromImage="+reg+"%2Fevil%2Fminer"),
				msg: "pullguard: POST /v1.41/images/create is not allowed: it gives the parameter fromImage 2 times", ref: "POST /v1.41/images/create"},
			{name: "body that is no form", call: rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/approved/busybox&tag=1.0",
				map[string]string{"Content-Type": "application/json"}, "a=%zz"),
				msgPrefix: "pullguard: POST /v1.41/images/create is not allowed: its body does not parse as a form: ", ref: "POST /v1.41/images/create"},
		},
		"import": {
			{name: "from a URL to a disallowed name", call: pull("fromSrc=http%3A%2F%2Fexample.com%2Fx.tar&repo=" + reg + "%2Fevil%2Fimported&tag=1"),
				msg: "pullguard: " + reg + "/evil/imported:1 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/imported:1"},
			{name: "from a URL to an allowed name", call: pull("fromSrc=http%3A%2F%2Fexample.com%2Fx.tar&repo=" + reg + "%2Fapproved%2Fimported&tag=1"), allow: true},
			{name: "tag replaces the tag in repo", call: pull("fromSrc=http%3A%2F%2Fexample.com%2Fx.tar&repo=nginx:1.25&tag=latest"),
				msg: "pullguard: docker.io/library/nginx:latest is not allowed: no allow rule matches" + defaultDeny, ref: "docker.io/library/nginx:latest"},
			{name: "without a name", call: pull("fromSrc=http%3A%2F%2Fexample.com%2Fx.tar"), allow: true},
			// docker import FILE: the tarball is the body, sent chunked as text/plain.
			{name: "from stdin", call: rawCall("POST", "/v1.41/images/create?fromSrc=-&repo="+reg+"%2Fapproved%2Fimported%3A1",
				map[string]string{"Content-Type": "text/plain", "User-Agent": ua}, ""),
				msg: "pullguard: POST /v1.41/images/create is not allowed: " + withheld, ref: "POST /v1.41/images/create"},
		},
		"containers/create": {
			{name: "allowed local image", call: create(reg + "/approved/busybox:1.0"), allow: true},
			{name: "disallowed local image", call: create(reg + "/evil/miner:1.0"),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "short ID of a disallowed image", call: create("9f477abac9c8"),
				msg: "pullguard: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "full ID of a disallowed image", call: create(evilID),
				msg: "pullguard: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "short ID of an allowed image", call: create("18c79d2bf870"), allow: true},
			{name: "an image with an allowed name, typed by another name", call: create(reg + "/evil/miner:2.0"), allow: true},
			// dockerd 20.10 resolves a digest as an image ID whatever repository
			// it is written with: the name typed is not the image's.
			{name: "allowed repository with the digest of a disallowed image", call: create(reg + "/approved/busybox@" + evilID),
				msg: "pullguard: " + reg + "/approved/busybox@" + evilID + " (image 9f477abac9c8) has no allowed name: " + evilPull,
				ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "image without names", call: create("dead00000000"),
				msg: "pullguard: image dead00000000 is not allowed: the image has no name, only an ID, so where it came from cannot be judged",
				ref: "dead00000000", imageID: blankID},
			{name: "allowed image not present", call: create(reg + "/approved/busybox:1.1"), allow: true},
			{name: "disallowed image not present", call: create(reg + "/evil/miner:0.5"),
				msg: "pullguard: " + reg + "/evil/miner:0.5 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/miner:0.5"},
			{name: "key in lower case", call: rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"), `{"image":"`+reg+`/evil/miner:1.0"}`),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "duplicate key: the last counts", call: rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"),
				`{"Image":"`+reg+`/approved/busybox:1.0","Image":"`+reg+`/evil/miner:1.0"}`),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "body not forwarded", call: rawCall("POST", "/v1.41/containers/create",
				map[string]string{"Content-Type": "application/json", "Content-Length": "1100089"}, ""),
				msg: "pullguard: POST /v1.41/containers/create is not allowed: " + withheld, ref: "POST /v1.41/containers/create"},
			{name: "no body", call: rawCall("POST", "/v1.41/containers/create", noBody, ""),
				msg: "pullguard: POST /v1.41/containers/create is not allowed: it has no body, so it names no image", ref: "POST /v1.41/containers/create"},
			{name: "body not JSON", call: rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"), "Image=nginx"),
				msgPrefix: "pullguard: POST /v1.41/containers/create is not allowed: its body is not the JSON of a container: ", ref: "POST /v1.41/containers/create"},
			{name: "no image", call: rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"), `{"Cmd":["true"]}`),
				msgPrefix: "pullguard:  is not allowed: invalid reference: ", ref: ""},
			{name: "lookup fails", call: create(reg + "/approved/flaky:1"),
				msg: "pullguard: " + reg + "/approved/flaky:1 is not allowed: pullguard could not look the image up in Docker's image store: connection reset by peer",
				ref: reg + "/approved/flaky:1", failed: true},
		},
		"tag": {
			{name: "allowed to allowed", call: tag("/v1.41/images/" + reg + "/approved/busybox:1.0/tag?repo=" + reg + "%2Fapproved%2Fbusybox&tag=2.0"), allow: true},
			{name: "allowed to disallowed", call: tag("/v1.41/images/" + reg + "/approved/busybox:1.0/tag?repo=" + reg + "%2Fevil%2Frenamed&tag=1.0"),
				msg: "pullguard: cannot tag " + reg + "/approved/busybox:1.0 as " + reg + "/evil/renamed:1.0: " + reg + "/evil/renamed:1.0 is not allowed: no allow rule matches" + defaultDeny,
				ref: reg + "/evil/renamed:1.0"},
			{name: "disallowed to allowed", call: tag("/v1.41/images/" + reg + "/evil/miner:1.0/tag?repo=" + reg + "%2Fapproved%2Fbusybox&tag=9.9"),
				msg: "pullguard: cannot tag " + reg + "/evil/miner:1.0 as " + reg + "/approved/busybox:9.9: " + evilPull,
				ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "disallowed by short ID to allowed", call: tag("/v1.41/images/9f477abac9c8/tag?repo=" + reg + "%2Fapproved%2Fbusybox&tag=9.9"),
				msg: "pullguard: cannot tag 9f477abac9c8 as " + reg + "/approved/busybox:9.9: image 9f477abac9c8 has no allowed name: " + evilPull,
				ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "source path percent-encoded", call: tag("/images/" + reg + "%2Fevil%2Fminer:1.0/tag?repo=" + reg + "%2Fapproved%2Fbusybox&tag=9.9"),
				msg: "pullguard: cannot tag " + reg + "/evil/miner:1.0 as " + reg + "/approved/busybox:9.9: " + evilPull,
				ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "new name without tag is latest", call: tag("/v1.41/images/" + reg + "/approved/busybox:1.0/tag?repo=registry.example.com%2Fteam%2Fapp"),
				msg: "pullguard: cannot tag " + reg + "/approved/busybox:1.0 as registry.example.com/team/app: registry.example.com/team/app:latest is not allowed: " +
					"matches deny rule registry.example.com/team/app tags [debug-[0-9]* latest] (SEC-12) (policy.yaml:12)",
				ref: "registry.example.com/team/app:latest"},
			{name: "tag replaces the tag in repo", call: tag("/v1.41/images/" + reg + "/approved/busybox:1.0/tag?repo=nginx:1.25&tag=latest"),
				msg: "pullguard: cannot tag " + reg + "/approved/busybox:1.0 as nginx:1.25:latest: docker.io/library/nginx:latest is not allowed: no allow rule matches" + defaultDeny,
				ref: "docker.io/library/nginx:latest"},
			{name: "new name in a forwarded body", call: rawCall("POST", "/v1.41/images/"+reg+"/approved/busybox:1.0/tag",
				map[string]string{"Content-Type": "application/json"}, "repo="+reg+"%2Fevil%2Frenamed&tag=1.0"),
				msg: "pullguard: cannot tag " + reg + "/approved/busybox:1.0 as " + reg + "/evil/renamed:1.0: " + reg + "/evil/renamed:1.0 is not allowed: no allow rule matches" + defaultDeny,
				ref: reg + "/evil/renamed:1.0"},
			{name: "body not forwarded", call: rawCall("POST", "/v1.41/images/"+reg+"/approved/busybox:1.0/tag?repo="+reg+"%2Fapproved%2Fbusybox&tag=2.0",
				map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "30"}, ""),
				msg: "pullguard: POST /v1.41/images/" + reg + "/approved/busybox:1.0/tag is not allowed: " + withheld,
				ref: "POST /v1.41/images/" + reg + "/approved/busybox:1.0/tag"},
			{name: "no repo", call: tag("/v1.41/images/" + reg + "/approved/busybox:1.0/tag"),
				msgPrefix: "pullguard: cannot tag " + reg + "/approved/busybox:1.0 as : ", ref: ""},
		},
		"build": {
			{name: "allowed tag", call: build("dockerfile=Dockerfile&q=1&t=" + reg + "%2Fapproved%2Fbuilt%3A1&version=1"), allow: true},
			{name: "disallowed tag", call: build("dockerfile=Dockerfile&t=" + reg + "%2Fevil%2Fbuilt%3A2&version=1"),
				msg: "pullguard: " + reg + "/evil/built:2 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/built:2"},
			{name: "one of several tags disallowed", call: build("t=" + reg + "%2Fapproved%2Fbuilt%3A1&t=registry.example.com%2Fteam%2Fapp"),
				msg: "pullguard: registry.example.com/team/app:latest is not allowed: matches deny rule registry.example.com/team/app tags [debug-[0-9]* latest] (SEC-12) (policy.yaml:12)",
				ref: "registry.example.com/team/app:latest"},
			{name: "no tag", call: build("dockerfile=Dockerfile&version=1"), allow: true},
			{name: "empty tag skipped", call: build("t=&version=1"), allow: true},
			{name: "BuildKit output name", call: build("version=2&outputs=" + urlQuery(`[{"Type":"moby","Attrs":{"name":"`+reg+`/approved/a:1,`+reg+`/evil/b:1"}}]`)),
				msg: "pullguard: " + reg + "/evil/b:1 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/b:1"},
			{name: "outputs not JSON", call: build("version=2&outputs=moby"),
				msgPrefix: "pullguard: POST /v1.41/build is not allowed: its outputs parameter is not valid JSON: ", ref: "POST /v1.41/build"},
			{name: "invalid tag", call: build("t=Evil%2FBuilt"),
				msgPrefix: "pullguard: Evil/Built is not allowed: invalid reference: ", ref: "Evil/Built"},
		},
		"services": {
			{name: "allowed image, as the CLI pins it", call: service("create", reg+"/approved/busybox:1.1@sha256:"+strings.Repeat("a", 64)), allow: true},
			{name: "disallowed image", call: service("create", reg+"/evil/miner:1.0@sha256:"+strings.Repeat("a", 64)),
				msg: "pullguard: " + reg + "/evil/miner:1.0@sha256:" + strings.Repeat("a", 64) + " is not allowed: no allow rule matches" + defaultDeny,
				ref: reg + "/evil/miner:1.0@sha256:" + strings.Repeat("a", 64)},
			{name: "update to a disallowed image", call: service("abc/update?version=7", reg+"/evil/miner:1.0"),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "update to an allowed image", call: service("abc/update?version=7", reg+"/approved/busybox:1.0"), allow: true},
			// The agent runs a local image whose digest it is given without
			// pulling: an allowed name does not make its content allowed.
			{name: "allowed repository with the digest of a local disallowed image", call: service("create", reg+"/approved/busybox@"+evilID),
				msg: "pullguard: " + reg + "/approved/busybox@" + evilID + " (image 9f477abac9c8) has no allowed name: " + evilPull,
				ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "image ID of a disallowed image", call: service("create", evilID),
				msg: "pullguard: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
			{name: "key in lower case", call: rawCall("POST", "/v1.41/services/create", jsonHeaders("x"),
				`{"tasktemplate":{"containerspec":{"image":"`+reg+`/evil/miner:1.0"}}}`),
				msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"},
			{name: "plugin service", call: rawCall("POST", "/v1.41/services/create", jsonHeaders("x"),
				`{"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Name":"x","Remote":"`+reg+`/evil/plugin:1"}}}`),
				msg: "pullguard: plugin " + reg + "/evil/plugin:1 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/plugin:1"},
			{name: "no image: dockerd refuses it", call: rawCall("POST", "/v1.41/services/create", jsonHeaders("x"), `{"Name":"x"}`), allow: true},
			{name: "body not forwarded", call: rawCall("POST", "/v1.41/services/create",
				map[string]string{"Content-Type": "application/json", "Content-Length": "1100089"}, ""),
				msg: "pullguard: POST /v1.41/services/create is not allowed: " + withheld, ref: "POST /v1.41/services/create"},
			{name: "body not JSON", call: rawCall("POST", "/v1.41/services/create", jsonHeaders("x"), "Image=nginx"),
				msgPrefix: "pullguard: POST /v1.41/services/create is not allowed: its body is not the JSON of a service: ", ref: "POST /v1.41/services/create"},
		},
		"fast path": {
			{name: "ping", call: rawCall("HEAD", "/_ping", map[string]string{"User-Agent": ua}, ""), allow: true},
			{name: "list images", call: rawCall("GET", "/v1.41/images/json", nil, ""), allow: true},
			{name: "inspect", call: rawCall("GET", "/v1.41/images/"+reg+"/evil/miner:1.0/json", nil, ""), allow: true},
			{name: "start", call: rawCall("POST", "/v1.41/containers/abc/start", noBody, ""), allow: true},
			{name: "GET of a judged path", call: rawCall("GET", "/v1.41/images/create?fromImage=evil", nil, ""), allow: true},
			{name: "remove image", call: rawCall("DELETE", "/v1.41/images/"+reg+"/evil/miner:1.0", nil, ""), allow: true},
			{name: "load", call: rawCall("POST", "/v1.41/images/load?quiet=1", map[string]string{"Content-Type": "application/x-tar"}, ""), allow: true},
			{name: "exec with a JSON body", call: rawCall("POST", "/v1.41/containers/abc/exec", jsonHeaders("x"), `{"Cmd":["sh"]}`), allow: true},
			{name: "build prune", call: rawCall("POST", "/v1.41/build/prune", noBody, ""), allow: true},
			{name: "list services", call: rawCall("GET", "/v1.41/services", nil, ""), allow: true},
			{name: "remove a service", call: rawCall("DELETE", "/v1.41/services/abc", nil, ""), allow: true},
			{name: "not a version prefix", call: rawCall("POST", "/vx/images/create?fromImage=evil", noBody, ""), allow: true},
		},
	}
	for group, cases := range groups {
		t.Run(group, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					f := newFixture(t, loadPolicy(t, nil))
					res := f.call(t, pathAuthZReq, tc.call)
					checkVerdict(t, tc, res, f.rec.all(), policy.ModeEnforce)
					if group == "fast path" {
						if n := f.policies.Reads(); n != 0 {
							t.Errorf("fast path read the policy %d times", n)
						}
						if n := f.images.callCount(); n != 0 {
							t.Errorf("fast path looked up images %d times", n)
						}
					}
				})
			}
		})
	}
}

func checkVerdict(t *testing.T, tc authzCase, res Response, recs []enforcer.Record, mode policy.Mode) {
	t.Helper()
	if tc.allow {
		if !res.Allow {
			t.Fatalf("refused: %q", res.Msg)
		}
		if len(recs) != 0 {
			t.Errorf("an allowed request reported %d records: %+v", len(recs), recs)
		}
		return
	}
	if res.Allow {
		t.Fatalf("allowed; want refusal %q", tc.msg+tc.msgPrefix)
	}
	switch {
	case tc.msgPrefix != "":
		if !strings.HasPrefix(res.Msg, tc.msgPrefix) {
			t.Errorf("Msg = %q\nwant prefix %q", res.Msg, tc.msgPrefix)
		}
	case res.Msg != tc.msg:
		t.Errorf("Msg = %q\nwant       %q", res.Msg, tc.msg)
	}
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %+v", len(recs), recs)
	}
	want := enforcer.Blocked
	if tc.failed {
		want = enforcer.Failed
		if recs[0].Err == nil {
			t.Error("a failed record without its error")
		}
	}
	checkRecord(t, recs[0], want, tc, mode)
}

func checkRecord(t *testing.T, r enforcer.Record, action enforcer.Action, tc authzCase, mode policy.Mode) {
	t.Helper()
	if r.Action != action || r.Event != "authz" || r.Runtime != enforcer.RuntimeDocker || r.Mode != mode || !r.Time.Equal(testNow) {
		t.Errorf("record = action %q event %q runtime %q mode %q time %v; want %q authz docker %q %v",
			r.Action, r.Event, r.Runtime, r.Mode, r.Time, action, mode, testNow)
	}
	ref := r.Decision.Reference
	if ref == "" {
		ref = r.Decision.Input
	}
	if ref != tc.ref {
		t.Errorf("record reference = %q, want %q", ref, tc.ref)
	}
	if r.Decision.Allowed {
		t.Errorf("record decision is an allowed one: %+v", r.Decision)
	}
	if r.ImageID != tc.imageID {
		t.Errorf("record image ID = %q, want %q", r.ImageID, tc.imageID)
	}
}

func urlQuery(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", " ", "%20", "#", "%23", "=", "%3D", ";", "%3B")
	return r.Replace(s)
}

// TestCapturedCalls replays calls exactly as dockerd 20.10 sent them.
func TestCapturedCalls(t *testing.T) {
	evilPull := reg + "/evil/miner:1.0 is not allowed: no allow rule matches" + defaultDeny
	tests := []struct {
		file string
		path string
		authzCase
	}{
		{file: "ping.json", path: pathAuthZReq, authzCase: authzCase{allow: true}},
		{file: "ping-response.json", path: pathAuthZRes, authzCase: authzCase{allow: true}},
		{file: "inspect.json", path: pathAuthZReq, authzCase: authzCase{allow: true}},
		{file: "inspect-response.json", path: pathAuthZRes, authzCase: authzCase{allow: true}},
		{file: "pull.json", path: pathAuthZReq, authzCase: authzCase{msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0"}},
		{file: "pull-all-tags.json", path: pathAuthZReq, authzCase: authzCase{allow: true}},
		{file: "containers-create.json", path: pathAuthZReq, authzCase: authzCase{msg: "pullguard: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID}},
		{file: "tag.json", path: pathAuthZReq, authzCase: authzCase{
			msg: "pullguard: cannot tag " + reg + "/evil/miner:1.0 as " + reg + "/approved/busybox:9: " + evilPull,
			ref: reg + "/evil/miner:1.0", imageID: evilID}},
		{file: "build.json", path: pathAuthZReq, authzCase: authzCase{
			msg: "pullguard: " + reg + "/evil/built:2 is not allowed: no allow rule matches" + defaultDeny, ref: reg + "/evil/built:2"}},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".json"), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "dockerd-20.10", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, loadPolicy(t, nil))
			res := f.call(t, tc.path, string(data))
			checkVerdict(t, tc.authzCase, res, f.rec.all(), policy.ModeEnforce)
		})
	}
}

func TestAuditModeAllowsAndReports(t *testing.T) {
	audit := loadPolicy(t, func(s string) string { return strings.Replace(s, "mode: enforce", "mode: audit", 1) })
	tests := []authzCase{
		{name: "pull", call: rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""), ref: reg + "/evil/miner:1.0"},
		{name: "create", call: rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"), createBody("9f477abac9c8")), ref: reg + "/evil/miner:1.0", imageID: evilID},
		{name: "body withheld", call: rawCall("POST", "/v1.41/images/create", map[string]string{"Content-Length": "9"}, ""), ref: "POST /v1.41/images/create"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, audit)
			res := f.call(t, pathAuthZReq, tc.call)
			if !res.Allow || res.Msg != "" {
				t.Fatalf("audit mode answered %+v, want a plain allow", res)
			}
			recs := f.rec.all()
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			checkRecord(t, recs[0], enforcer.WouldBlock, tc, policy.ModeAudit)
		})
	}
	t.Run("allowed request reports nothing", func(t *testing.T) {
		f := newFixture(t, audit)
		if res := f.call(t, pathAuthZReq, rawCall("POST", "/v1.41/images/create?fromImage=nginx&tag=1.25", noBody, "")); !res.Allow {
			t.Fatalf("refused: %+v", res)
		}
		if recs := f.rec.all(); len(recs) != 0 {
			t.Errorf("got %d records, want none", len(recs))
		}
	})
}

// TestPolicyReadPerRequest: a reload (an atomic swap in the source) takes
// effect on the next request.
func TestPolicyReadPerRequest(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	call := rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, "")
	if res := f.call(t, pathAuthZReq, call); res.Allow {
		t.Fatal("allowed before the reload")
	}
	f.policies.Set(loadPolicy(t, func(s string) string {
		return strings.Replace(s, "allow:\n", "allow:\n  - image: "+reg+"/evil/**\n", 1)
	}))
	if res := f.call(t, pathAuthZReq, call); !res.Allow {
		t.Fatalf("refused after the reload allowed it: %q", res.Msg)
	}
}

func TestNoPolicyRefusesJudgedRequests(t *testing.T) {
	f := newFixture(t, nil)
	if res := f.call(t, pathAuthZReq, rawCall("GET", "/v1.41/info", nil, "")); !res.Allow {
		t.Errorf("fast path refused without a policy: %q", res.Msg)
	}
	res := f.call(t, pathAuthZReq, rawCall("POST", "/v1.41/images/create?fromImage=nginx&tag=1.25", noBody, ""))
	if want := "pullguard: no policy is loaded; refusing POST /v1.41/images/create"; res.Allow || res.Msg != want {
		t.Errorf("answer %+v, want refusal %q", res, want)
	}
}

func TestPluginProtocol(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	t.Run("activate", func(t *testing.T) {
		w := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, pathActivate, strings.NewReader("")))
		if got, want := strings.TrimSpace(w.Body.String()), `{"Implements":["authz"]}`; w.Code != 200 || got != want {
			t.Errorf("activate: %d %s, want 200 %s", w.Code, got, want)
		}
	})
	t.Run("response phase allows without decoding", func(t *testing.T) {
		if res := f.call(t, pathAuthZRes, "not even JSON"); !res.Allow {
			t.Errorf("AuthZRes refused: %+v", res)
		}
	})
	t.Run("unreadable request is refused", func(t *testing.T) {
		res := f.call(t, pathAuthZReq, `{"RequestMethod":"POST","RequestUri":`)
		if res.Allow || res.Msg != "pullguard: unreadable authorization request" || res.Err == "" {
			t.Errorf("answer %+v, want a refusal with Err", res)
		}
	})
	t.Run("body that is not base64", func(t *testing.T) {
		res := f.call(t, pathAuthZReq, `{"RequestMethod":"POST","RequestUri":"/containers/create","RequestBody":"!!"}`)
		if res.Allow {
			t.Errorf("allowed: %+v", res)
		}
	})
	t.Run("allow is always encoded", func(t *testing.T) {
		w := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, pathAuthZReq, strings.NewReader(rawCall("POST", "/v1.41/images/create?fromImage=evil&tag=1", noBody, ""))))
		if !strings.Contains(w.Body.String(), `"Allow":false`) {
			t.Errorf("refusal encoded as %s", w.Body)
		}
	})
}

func TestStripVersion(t *testing.T) {
	for in, want := range map[string]string{
		"/v1.41/images/create": "/images/create",
		"/v1/build":            "/build",
		"/images/create":       "/images/create",
		"/v/images/create":     "/v/images/create",
		"/v1.41":               "/v1.41",
		"/vx1/build":           "/vx1/build",
		"/version":             "/version",
	} {
		if got := stripVersion(in); got != want {
			t.Errorf("stripVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzAuthZReq: whatever the call, the plugin answers with a verdict and,
// for a pull of a disallowed image however it is encoded, never allows it.
func FuzzAuthZReq(f *testing.F) {
	entries, _ := os.ReadDir(filepath.Join("testdata", "dockerd-20.10"))
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join("testdata", "dockerd-20.10", e.Name())); err == nil {
			f.Add(string(data))
		}
	}
	f.Add(rawCall("POST", "/v1.41/images/create?fromImage=a&tag=b", noBody, ""))
	f.Add(rawCall("POST", "/v1.41/images/x/tag?repo=a", noBody, "repo=b"))
	f.Add(rawCall("POST", "/v1.41/containers/create", jsonHeaders("x"), `{"Image":"sha256:abc"}`))
	f.Add(rawCall("POST", "/build?t=a&outputs=%5B%5D", nil, ""))
	p := loadPolicy(f, nil)
	fx := newFixture(f, p)
	f.Fuzz(func(t *testing.T, call string) {
		w := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, pathAuthZReq, strings.NewReader(call)))
		var res Response
		if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
			t.Fatalf("answer %q: %v", w.Body, err)
		}
		var req Request
		if json.Unmarshal([]byte(call), &req) != nil || !res.Allow {
			return
		}
		// An allowed pull must be of a reference the policy allows.
		tg, err := route(req.RequestMethod, req.RequestURI)
		if err != nil || tg.endpoint != imagesCreate {
			return
		}
		form, err := requestForm(&req, tg)
		if err != nil {
			t.Fatalf("allowed a request whose form does not parse: %v", err)
		}
		if img := form.Get("fromImage"); img != "" {
			ref, err := pullRef(img, form.Get("tag"))
			if err != nil {
				t.Fatalf("allowed a pull of an invalid reference %q", img)
			}
			if d := p.Decide(ref.String(), testNow); !d.Allowed && !reference.IsNameOnly(ref) {
				t.Fatalf("allowed a pull of %s: %s", ref, d.Reason)
			}
		}
	})
}
