package prepull

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const wrapper = "#!/bin/sh\nexec /usr/bin/pullguard verify-image \"$@\"\n"

// setup writes a containerd configuration (version 3 unless the text says otherwise) whose
// verifier directory holds files (name → content), plus drop-ins, and returns its path.
func setup(t *testing.T, config string, files map[string]string, dropIns map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "verifiers")
	if files != nil {
		if err := os.Mkdir(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range dropIns {
		if err := os.WriteFile(filepath.Join(dir, "conf.d", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config = strings.ReplaceAll(config, "BIN", bin)
	if !strings.Contains(config, "version =") {
		config = "version = 3\n" + config
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const verifierSection = "[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = \"BIN\"\n"

func TestCheck(t *testing.T) {
	ok := map[string]string{"pullguard": wrapper}
	tests := []struct {
		name    string
		config  string
		files   map[string]string // nil: no verifier directory
		dropIns map[string]string
		want    []string // settings warned about, in order
	}{
		{name: "wrapper installed", config: verifierSection, files: ok},
		{name: "no verifier directory", config: verifierSection,
			want: []string{`plugins."io.containerd.image-verifier.v1.bindir".bin_dir`}},
		{name: "directory without pullguard", config: verifierSection,
			files: map[string]string{"other": "#!/bin/sh\nexit 0\n", "pullguard-binary": "\x7fELF pullguard verify-image"},
			want:  []string{`plugins."io.containerd.image-verifier.v1.bindir".bin_dir`}},
		{name: "max_verifiers cuts pullguard off", config: verifierSection + "  max_verifiers = 1\n",
			files: map[string]string{"a-first": "#!/bin/sh\nexit 0\n", "pullguard": wrapper},
			want:  []string{`plugins."io.containerd.image-verifier.v1.bindir".max_verifiers`}},
		{name: "negative max_verifiers runs all", config: verifierSection + "  max_verifiers = -1\n",
			files: map[string]string{"a-first": "#!/bin/sh\nexit 0\n", "pullguard": wrapper}},
		{name: "verifier plugin disabled", config: "disabled_plugins = [\"io.containerd.image-verifier.v1.bindir\"]\n" + verifierSection,
			files: ok, want: []string{"disabled_plugins"}},
		{name: "registry mirrors (v3)", files: ok, config: verifierSection +
			"[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n",
			want: []string{`plugins."io.containerd.cri.v1.images".registry.mirrors`}},
		{name: "registry mirrors in a version 2 file", files: ok, config: "version = 2\n" + verifierSection +
			"[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n",
			want: []string{`plugins."io.containerd.cri.v1.images".registry.mirrors`}},
		{name: "discard_unpacked_layers in a version 2 file", files: ok, config: "version = 2\n" + verifierSection +
			"[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  discard_unpacked_layers = true\n",
			want: []string{`plugins."io.containerd.cri.v1.images".discard_unpacked_layers`}},
		{name: "CRI disabled: its settings do not matter", files: ok,
			config: "disabled_plugins = [\"io.containerd.cri.v1.images\"]\n" + verifierSection +
				"[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n"},
		{name: "config_path is fine", files: ok, config: verifierSection +
			"[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"},
		{name: "every fallback setting", files: ok, config: verifierSection + `[plugins."io.containerd.cri.v1.images"]
  use_local_image_pull = true
  disable_snapshot_annotations = false
  discard_unpacked_layers = true
  max_concurrent_downloads = 5
  image_pull_with_sync_fs = true
  [plugins."io.containerd.cri.v1.images".registry.configs."r.example".tls]
    insecure_skip_verify = true
  [plugins."io.containerd.cri.v1.images".registry.auths."r.example"]
    username = "u"
`, want: []string{
			`plugins."io.containerd.cri.v1.images".use_local_image_pull`,
			`plugins."io.containerd.cri.v1.images".disable_snapshot_annotations`,
			`plugins."io.containerd.cri.v1.images".discard_unpacked_layers`,
			`plugins."io.containerd.cri.v1.images".registry.configs`,
			`plugins."io.containerd.cri.v1.images".registry.auths`,
			`plugins."io.containerd.cri.v1.images".max_concurrent_downloads`,
			`plugins."io.containerd.cri.v1.images".image_pull_with_sync_fs`,
		}},
		{name: "default max_concurrent_downloads is fine", files: ok, config: verifierSection +
			"[plugins.\"io.containerd.cri.v1.images\"]\n  max_concurrent_downloads = 3\n"},
		{name: "a drop-in adds mirrors", files: ok, config: "imports = [\"conf.d/*.toml\"]\n" + verifierSection,
			dropIns: map[string]string{"50-mirror.toml": "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n"},
			want:    []string{`plugins."io.containerd.cri.v1.images".registry.mirrors`}},
		{name: "a drop-in moves the verifier directory away", files: ok, config: "imports = [\"conf.d/*.toml\"]\n" + verifierSection,
			dropIns: map[string]string{"10-bindir.toml": "version = 3\n[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = \"/nonexistent/verifiers\"\n"},
			want:    []string{`plugins."io.containerd.image-verifier.v1.bindir".bin_dir`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := Check(setup(t, tt.config, tt.files, tt.dropIns))
			var got []string
			for _, w := range ws {
				got = append(got, w.Setting)
				if !strings.HasSuffix(w.Text, afterTheFact) {
					t.Errorf("warning %q does not say what pullguard does instead", w)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("warnings about\n  %q\nwant\n  %q\n(%q)", got, tt.want, ws)
			}
		})
	}
}

func TestCheckUnreadableConfig(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(broken, []byte("version = 3\n[plugins\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{broken, filepath.Join(dir, "missing.toml")} {
		ws := Check(path)
		if len(ws) != 1 || ws[0].Setting != path || !strings.Contains(ws[0].Text, "cannot read containerd's configuration") {
			t.Errorf("Check(%s) = %q, want one warning that the configuration cannot be read", path, ws)
		}
	}
}

func TestWarningString(t *testing.T) {
	w := Warning{Setting: "s", Text: "t"}
	if got := w.String(); got != "s: t" {
		t.Errorf("String() = %q", got)
	}
}
