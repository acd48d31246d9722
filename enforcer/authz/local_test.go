package authz

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// TestLocalContentAndPlugins: under local-images: deny the requests that
// make an image on the host are refused whatever they name; under allow
// they are judged by their names. Plugins are judged as images under both.
func TestLocalContentAndPlugins(t *testing.T) {
	deny := loadPolicy(t, func(s string) string { return strings.Replace(s, "local-images: allow", "local-images: deny", 1) })
	allow := loadPolicy(t, nil)
	privileges := `[{"Name":"network","Description":"permissions to access a network","Value":["none"]}]`
	post := func(uri string) string { return rawCall("POST", uri, noBody, "") }
	withPrivileges := func(uri string) string { return rawCall("POST", uri, jsonHeaders(privileges), privileges) }
	tarBody := func(uri string) string {
		return rawCall("POST", uri, map[string]string{"Content-Type": "application/x-tar", "User-Agent": ua}, "")
	}
	const local = "whose content did not come from an allowed repository (local-images: deny)"
	for _, c := range []struct {
		name         string
		call         string
		deny         string // refusal under deny ("" allowed)
		allowSetting string // refusal under allow ("" allowed)
	}{
		{"import from a URL under an allowed name", post("/v1.41/images/create?fromSrc=http%3A%2F%2F127.0.0.1%2Fx.tar&repo=" + reg + "%2Fapproved%2Fx&tag=1"),
			local, ""},
		{"import from a URL, nameless", post("/v1.41/images/create?fromSrc=http%3A%2F%2F127.0.0.1%2Fx.tar"), local, ""},
		{"a pull is not local content", post("/v1.41/images/create?fromImage=" + reg + "%2Fapproved%2Fx&tag=1"), "", ""},
		{"commit under an allowed name", post("/v1.41/commit?container=abc&repo=" + reg + "%2Fapproved%2Fcommitted"), local, ""},
		{"commit under a disallowed name", post("/v1.41/commit?container=abc&repo=" + reg + "%2Fevil%2Fx&tag=1"),
			local, reg + "/evil/x:1 is not allowed"},
		{"classic build", tarBody("/v1.41/build?t=" + reg + "%2Fapproved%2Fbuilt%3A1"), local, ""},
		{"BuildKit's API", post("/v1.41/grpc"), local, ""},
		{"plugin pull, allowed", withPrivileges("/v1.41/plugins/pull?name=&remote=" + reg + "%2Fapproved%2Fplug%3A1.0"), "", ""},
		{"plugin pull, disallowed remote", withPrivileges("/v1.41/plugins/pull?name=&remote=" + reg + "%2Fevil%2Fplug%3A1.0"),
			"plugin " + reg + "/evil/plug:1.0 is not allowed", "plugin " + reg + "/evil/plug:1.0 is not allowed"},
		{"plugin pull, disallowed local name", withPrivileges("/v1.41/plugins/pull?name=" + reg + "%2Fevil%2Falias%3A1&remote=" + reg + "%2Fapproved%2Fplug%3A1.0"),
			"plugin " + reg + "/evil/alias:1 is not allowed", "plugin " + reg + "/evil/alias:1 is not allowed"},
		{"plugin upgrade to a disallowed remote", withPrivileges("/v1.41/plugins/" + reg + "/approved/plug:1.0/upgrade?remote=" + reg + "%2Fevil%2Fplug%3A1.0"),
			"plugin " + reg + "/evil/plug:1.0 is not allowed", "plugin " + reg + "/evil/plug:1.0 is not allowed"},
		{"plugin upgrade, a form body hidden from pullguard", rawCall("POST", "/v1.41/plugins/x/upgrade?remote="+reg+"%2Fapproved%2Fplug%3A1.0",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, ""), withheld, withheld},
		{"plugin create under an allowed name", tarBody("/v1.41/plugins/create?name=" + reg + "%2Fapproved%2Fcreated%3A1"), local, ""},
		{"plugin create under a disallowed name", tarBody("/v1.41/plugins/create?name=" + reg + "%2Fevil%2Fcreated%3A1"),
			local, "plugin " + reg + "/evil/created:1 is not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range []struct {
				name, want string
				f          *fixture
			}{{"deny", c.deny, newFixture(t, deny)}, {"allow", c.allowSetting, newFixture(t, allow)}} {
				res := s.f.call(t, "/AuthZPlugin.AuthZReq", c.call)
				switch {
				case s.want == "" && !res.Allow:
					t.Errorf("local-images: %s: refused (%s), want allowed", s.name, res.Msg)
				case s.want != "" && (res.Allow || !strings.Contains(res.Msg, s.want)):
					t.Errorf("local-images: %s: allow=%v %q, want refused saying %q", s.name, res.Allow, res.Msg, s.want)
				}
			}
		})
	}
}

// TestLocalContentContainer: under local-images: deny a container of an
// image whose allowed name is on content made on the host is refused, and
// the refusal says why, not which default decided.
func TestLocalContentContainer(t *testing.T) {
	const loadedID = "sha256:1010101010101010101010101010101010101010101010101010101010101010"
	name := reg + "/approved/loaded:1"
	for _, c := range []struct {
		setting string
		edit    func(string) string
		allow   bool
	}{
		{"deny", func(s string) string { return strings.Replace(s, "local-images: allow", "local-images: deny", 1) }, false},
		{"allow", nil, true},
	} {
		f := newFixture(t, loadPolicy(t, c.edit))
		f.images.images[name] = LocalImage{ID: loadedID, Names: []string{name}}
		b := createBody(name)
		res := f.call(t, "/AuthZPlugin.AuthZReq", rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b))
		want := "pullguard: " + name + " is not allowed: " + policy.ReasonLocalContent
		switch {
		case c.allow && !res.Allow:
			t.Errorf("local-images: %s: refused (%s)", c.setting, res.Msg)
		case !c.allow && (res.Allow || res.Msg != want):
			t.Errorf("local-images: %s: allow=%v %q, want refused with %q", c.setting, res.Allow, res.Msg, want)
		}
	}
}

// TestLocalContentContainerdStore: on dockerd 29's containerd image store
// every name comes with a repository digest made from it, so under deny the
// plugin asks the registry: a container of loaded content under an allowed
// name is refused, one of pulled content (or a copy of it under another
// allowed name) is allowed, and while the registry cannot answer a
// container of content it has not vouched for is refused and journaled as
// failed.
func TestLocalContentContainerdStore(t *testing.T) {
	const pulledID = "sha256:2020202020202020202020202020202020202020202020202020202020202020"
	const loadedID = "sha256:3030303030303030303030303030303030303030303030303030303030303030"
	pulled, copied, loaded := reg+"/approved/app:1", reg+"/approved/copy:1", reg+"/approved/loaded:1"
	deny := loadPolicy(t, func(s string) string { return strings.Replace(s, "local-images: allow", "local-images: deny", 1) })
	f := newFixture(t, deny)
	registry := enforcertest.NewRegistry([2]string{reg + "/approved/app", pulledID})
	WithEvidence(evidence.New(nil, provenance.New(registry), logrus.StandardLogger()))(f.srv)
	for name, id := range map[string]string{pulled: pulledID, copied: pulledID, loaded: loadedID} {
		repo, _, _ := strings.Cut(name[len(reg):], ":")
		f.images.images[name] = LocalImage{ID: id, Names: []string{name, reg + repo + "@" + id}, InContainerd: true}
	}
	create := func(name string) Response {
		b := createBody(name)
		return f.call(t, "/AuthZPlugin.AuthZReq", rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b))
	}
	if res := create(pulled); !res.Allow {
		t.Errorf("pulled content refused: %s", res.Msg)
	}
	if res := create(copied); !res.Allow {
		t.Errorf("a copy of pulled content refused: %s", res.Msg)
	}
	if res, want := create(loaded), "pullguard: "+loaded+" is not allowed: "+policy.ReasonLocalContent; res.Allow || !strings.HasPrefix(res.Msg, want) {
		t.Errorf("loaded content: allow=%v %q, want refused with %q", res.Allow, res.Msg, want)
	}

	registry.SetDown(true)
	late := reg + "/approved/late:1"
	f.images.images[late] = LocalImage{ID: loadedID, Names: []string{late, reg + "/approved/late@" + loadedID}, InContainerd: true}
	if res := create(late); res.Allow || !strings.Contains(res.Msg, "could not ask the registry") {
		t.Errorf("while the registry is down: allow=%v %q, want refused saying it could not ask", res.Allow, res.Msg)
	}
	if res := create(pulled); !res.Allow {
		t.Errorf("pulled content refused while the registry is down (its answer is cached): %s", res.Msg)
	}
}
