package policy

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestLocalImagesSetting(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want LocalImages
	}{
		{"# nothing\n", LocalImagesDeny},
		{"local-images: deny\n", LocalImagesDeny},
		{"local-images: allow\n", LocalImagesAllow},
	} {
		p, err := Parse(Source{Name: "p.yaml", Data: []byte(tc.yaml)})
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if p.LocalImages != tc.want {
			t.Errorf("%q: local-images = %q, want %q", tc.yaml, p.LocalImages, tc.want)
		}
	}
}

func TestLocalImagesStrict(t *testing.T) {
	for yaml, want := range map[string]string{
		"local-images: yes\n":    `p.yaml:1:15: local-images: expected deny or allow, got "yes"`,
		"local-images: true\n":   `p.yaml:1:15: local-images: expected a string, got bool true`,
		"local-images: [deny]\n": `p.yaml:1:15: local-images: expected a string, got a list`,
		"local-images: Allow\n":  `p.yaml:1:15: local-images: expected deny or allow, got "Allow"`,
	} {
		_, err := Parse(Source{Name: "p.yaml", Data: []byte(yaml)})
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: error = %v\nwant %s", yaml, err, want)
		}
	}
}

// TestLocalImagesOneFileOnly: like mode, the setting belongs to one file, so
// that a team's drop-in cannot quietly loosen what the organization set.
func TestLocalImagesOneFileOnly(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.yaml"), "mode: enforce\nlocal-images: deny\n")
	write(t, filepath.Join(dir, "policy.d", "50-team.yaml"), "local-images: allow\n")
	_, err := Load(filepath.Join(dir, "policy.yaml"), LoadOptions{})
	want := filepath.Join(dir, "policy.d", "50-team.yaml") + ":1:1: local-images is set twice: first at " +
		filepath.Join(dir, "policy.yaml") + ":2:1; set it in one file only"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}
