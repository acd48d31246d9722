package lint

import (
	"os"
	"regexp"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestPreCommitHook: the repository's .pre-commit-hooks.yaml runs
// `pullguard lint` over the checkout, and its file filter triggers it for
// every file the directory walk would lint (Python's re and Go's regexp
// agree on the syntax it uses).
func TestPreCommitHook(t *testing.T) {
	data, err := os.ReadFile("../.pre-commit-hooks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var hooks []struct {
		ID            string   `yaml:"id"`
		Entry         string   `yaml:"entry"`
		Language      string   `yaml:"language"`
		Files         string   `yaml:"files"`
		PassFilenames *bool    `yaml:"pass_filenames"`
		Args          []string `yaml:"args"`
	}
	if err := yaml.Unmarshal(data, &hooks); err != nil {
		t.Fatal(err)
	}
	if len(hooks) != 1 {
		t.Fatalf("want one hook, got %d", len(hooks))
	}
	h := hooks[0]
	if h.ID != "pullguard-lint" || h.Entry != "pullguard lint" || h.Language != "golang" ||
		h.PassFilenames == nil || *h.PassFilenames || len(h.Args) != 1 || h.Args[0] != "." {
		t.Errorf("hook: %+v", h)
	}
	files := regexp.MustCompile(h.Files)
	for _, name := range []string{"Dockerfile", "svc/Dockerfile", "Containerfile", "web.Dockerfile", "Dockerfile.prod",
		"compose.yaml", "deploy/docker-compose.prod.yml", "k8s/deployment.yaml"} {
		if KindOf(name) == "" {
			t.Fatalf("%s is not a lint input", name)
		}
		if !files.MatchString(name) {
			t.Errorf("the hook is not triggered by %s", name)
		}
	}
	for _, name := range []string{"README.md", "main.go", "Dockerfiles/notes.txt"} {
		if files.MatchString(name) {
			t.Errorf("the hook is triggered by %s", name)
		}
	}
}
