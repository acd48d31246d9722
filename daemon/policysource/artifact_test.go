package policysource

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"policy.yaml":            true,
		"policy.d/10-x.yaml":     true,
		"keys/team/cosign.pub":   true,
		"":                       false,
		"../policy.yaml":         false,
		"keys/../../etc/x":       false,
		"/etc/shadow":            false,
		"a//b":                   false,
		"./a":                    false,
		"a/":                     false,
		".manifest.json":         false,
		"keys/.hidden":           false,
		`keys\a.pub`:             false,
		"a\x00b":                 false,
		strings.Repeat("a", 256): false,
	} {
		if err := checkPath(p); (err == nil) != ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

// manifestOf is the manifest of files, as push makes it, edited by edit.
func manifestOf(t *testing.T, files []file, edit func(*v1.Manifest)) ([]byte, string) {
	t.Helper()
	raw, err := manifestFor(files)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		edit(&m)
		if raw, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	return raw, descriptorOf("", raw, nil).Digest.String()
}

var testFiles = []file{
	{"keys/team.pub", []byte("key")},
	{"policy.d/10-deny.yaml", []byte("deny: []\n")},
	{"policy.yaml", []byte("mode: enforce\n")},
}

func TestParseManifest(t *testing.T) {
	tests := map[string]struct {
		edit func(*v1.Manifest)
		want string // "" when valid
	}{
		"as pushed": {nil, ""},
		"ORAS style: the artifact type as config media type": {func(m *v1.Manifest) {
			m.ArtifactType, m.Config.MediaType = "", ArtifactType
		}, ""},
		"another artifact type": {func(m *v1.Manifest) { m.ArtifactType = "application/vnd.cncf.helm.config.v1+json" }, "artifact type"},
		"an image": {func(m *v1.Manifest) {
			m.ArtifactType = ""
			m.Config.MediaType = "application/vnd.oci.image.config.v1+json"
		}, "artifact type"},
		"a tar layer":            {func(m *v1.Manifest) { m.Layers[0].MediaType = "application/vnd.oci.image.layer.v1.tar" }, "media type"},
		"no title":               {func(m *v1.Manifest) { delete(m.Layers[0].Annotations, titleAnnotation) }, "file name"},
		"path traversal":         {func(m *v1.Manifest) { m.Layers[0].Annotations[titleAnnotation] = "../../etc/cron.d/x" }, "not a plain relative path"},
		"absolute path":          {func(m *v1.Manifest) { m.Layers[0].Annotations[titleAnnotation] = "/etc/passwd" }, "not a plain relative path"},
		"hidden file":            {func(m *v1.Manifest) { m.Layers[0].Annotations[titleAnnotation] = ".manifest.json" }, "hidden"},
		"a name twice":           {func(m *v1.Manifest) { m.Layers[0].Annotations[titleAnnotation] = "policy.yaml" }, "twice"},
		"a file and a directory": {func(m *v1.Manifest) { m.Layers[0].Annotations[titleAnnotation] = "policy.d" }, "both a file and a directory"},
		"no policy.yaml":         {func(m *v1.Manifest) { m.Layers[2].Annotations[titleAnnotation] = "other.yaml" }, "no policy.yaml"},
		"a file too large":       {func(m *v1.Manifest) { m.Layers[0].Size = maxFileSize + 1 }, "bytes, more than"},
		"too large in all": {func(m *v1.Manifest) {
			for i := range m.Layers {
				m.Layers[i].Size = maxFileSize
			}
			for i := 0; i < 2; i++ {
				l := m.Layers[0]
				l.Annotations = map[string]string{titleAnnotation: "big" + string(rune('a'+i))}
				m.Layers = append(m.Layers, l)
			}
		}, "in all"},
		"too many files": {func(m *v1.Manifest) {
			for i := 0; i < maxFiles; i++ {
				l := m.Layers[0]
				l.Annotations = map[string]string{titleAnnotation: "f/" + strings.Repeat("x", i+1)}
				m.Layers = append(m.Layers, l)
			}
		}, "files, more than"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			raw, digest := manifestOf(t, testFiles, tc.edit)
			_, err := parseManifest(raw, digest)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want errMalformed saying %q", err, tc.want)
			}
		})
	}
	raw, _ := manifestOf(t, testFiles, nil)
	if _, err := parseManifest(raw, "sha256:"+strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("a manifest under another digest: %v", err)
	}
}

func TestReadBlobChecksContent(t *testing.T) {
	d := descriptorOf(FileMediaType, []byte("policy"), map[string]string{titleAnnotation: "policy.yaml"})
	if _, err := readBlob(strings.NewReader("policy"), d); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"polic", "policy and more", "POLICY"} {
		if _, err := readBlob(strings.NewReader(body), d); !errors.Is(err, errMalformed) {
			t.Errorf("blob %q for %s: %v, want errMalformed", body, d.Digest, err)
		}
	}
}

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.yaml", "mode: enforce\n")
	write("policy.d/10.yaml", "deny: []\n")
	write("keys/a.pub", "key")
	write(".git/config", "not policy")
	write("policy.d/.10.yaml.swp", "editor")
	files, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.path)
	}
	if want := "keys/a.pub policy.d/10.yaml policy.yaml"; strings.Join(got, " ") != want {
		t.Errorf("packed %v, want %s", got, want)
	}
	again, _ := readDir(dir)
	a, _ := manifestFor(files)
	b, _ := manifestFor(again)
	if string(a) != string(b) {
		t.Error("the same directory packed twice made two manifests")
	}

	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "keys", "b.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := readDir(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a symlink was packed: %v", err)
	}
}

// FuzzParseManifest: whatever a registry sends, parsing does not panic,
// and what it accepts names only files that stay below the artifact's root.
func FuzzParseManifest(f *testing.F) {
	raw, _ := manifestFor(testFiles)
	f.Add(raw)
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.pullguard.policy.v1","layers":[{"mediaType":"application/vnd.pullguard.policy.file.v1","size":1,"digest":"sha256:00","annotations":{"org.opencontainers.image.title":"../x"}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		digest := descriptorOf("", raw, nil).Digest.String()
		m, err := parseManifest(raw, digest)
		if err != nil {
			return
		}
		for _, l := range m.Layers {
			title := l.Annotations[titleAnnotation]
			if !filepath.IsLocal(title) || strings.HasPrefix(title, ".") || strings.Contains(title, "/.") {
				t.Fatalf("accepted file name %q", title)
			}
		}
	})
}
