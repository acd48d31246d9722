// Package prepull says when containerd will NOT refuse a disallowed pull before it happens.
//
// On containerd ≥ 2.0, pullguard refuses a pull before any content is fetched through
// containerd's image-verifier plugin (io.containerd.image-verifier.v1.bindir), which runs
// every executable in its bin_dir — among them pullguard's wrapper around `pullguard
// verify-image` — for each pull made through the transfer service. That protection is off,
// silently, when:
//
//   - the bindir plugin is disabled, its bin_dir does not exist, pullguard's wrapper is not in
//     it, or max_verifiers cuts the wrapper off (containerd runs only the first max_verifiers
//     entries, by name);
//   - a CRI image setting makes containerd's CRI plugin fall back to "local" pulls
//     (containerd's client.Pull instead of the transfer service), which skip verifiers. The
//     settings are those of CheckLocalImagePullConfigs in containerd v2.4's
//     internal/cri/config/config.go: use_local_image_pull, disable_snapshot_annotations =
//     false, discard_unpacked_layers, registry.mirrors / configs / auths,
//     max_concurrent_downloads other than 3, image_pull_with_sync_fs.
//
// Check reads the configuration with containerd's own loader (imports, globs and the merge
// rules of containerd 2.x), and returns one Warning per reason. pullguard still removes
// disallowed images after the pull when any applies; the warnings say that the window between
// pull and removal is open.
package prepull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/sirupsen/logrus"
)

// DefaultConfigPath is where containerd reads its configuration unless told otherwise.
const DefaultConfigPath = "/etc/containerd/config.toml"

// Plugin IDs and defaults of containerd 2.x (plugins/imageverifier, plugins/cri/images).
const (
	verifierPlugin      = "io.containerd.image-verifier.v1.bindir"
	defaultBinDir       = "/opt/containerd/image-verifier/bin"
	defaultMaxVerifiers = 10
	criImagesPlugin     = "io.containerd.cri.v1.images"
	criPluginV2         = "io.containerd.grpc.v1.cri" // version 2 configs keep image settings here
	// defaultMaxConcurrentDownloads: CRI falls back to local pulls for any other value.
	defaultMaxConcurrentDownloads = 3
)

// Warning is one reason disallowed pulls are not refused before they happen.
type Warning struct {
	// Setting names what is at fault as written in containerd's configuration, e.g.
	// `plugins."io.containerd.cri.v1.images".registry.mirrors`.
	Setting string
	// Text says what it means, in a sentence.
	Text string
}

func (w Warning) String() string { return w.Setting + ": " + w.Text }

// afterTheFact ends every warning: what pullguard does instead.
const afterTheFact = "; disallowed pulls are removed after the fact instead of refused"

// Check reads containerd's configuration at path (with its imports) and returns why
// pullguard's verifier will not refuse disallowed pulls before they happen; none when it will.
// A missing file at DefaultConfigPath is containerd's defaults, as for containerd itself.
func Check(path string) []Warning {
	cfg, err := load(path)
	if err != nil {
		return []Warning{{Setting: path, Text: fmt.Sprintf("cannot read containerd's configuration (%v), so it is unknown whether pulls are refused before they happen", err)}}
	}
	ws := checkVerifier(cfg)
	if !disabled(cfg, criImagesPlugin) && !disabled(cfg, criPluginV2) {
		ws = append(ws, checkCRI(cfg)...)
	}
	return ws
}

// load reads the configuration as containerd 2.x does, quietly: containerd's loader logs its
// own warnings (unknown keys, migration) through containerd/log, which is not pullguard's log.
func load(path string) (*srvconfig.Config, error) {
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(quiet))
	cfg := &srvconfig.Config{Version: version.ConfigVersion}
	err := srvconfig.LoadConfigWithPlugins(ctx, path, criMigration, cfg)
	if errors.Is(err, os.ErrNotExist) && path == DefaultConfigPath {
		if _, statErr := os.Stat(path); errors.Is(statErr, os.ErrNotExist) {
			return &srvconfig.Config{Version: version.ConfigVersion}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// criMigration moves a version 1 or 2 file's CRI image settings to where version 3 keeps
// them, as containerd's CRI images plugin does when it loads such a file (configMigration in
// plugins/cri/images/plugin.go), for the settings Check reads.
func criMigration() iter.Seq[plugin.Registration] {
	return slices.Values([]plugin.Registration{{
		Type: "io.pullguard.prepull",
		ID:   "cri-images-migration",
		ConfigMigration: func(_ context.Context, from int, plugins map[string]any) error {
			if from >= version.ConfigVersion {
				return nil
			}
			src, ok := plugins[criPluginV2].(map[string]any)
			if !ok {
				return nil
			}
			dst, _ := plugins[criImagesPlugin].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
			}
			for _, key := range []string{"registry", "max_concurrent_downloads", "image_pull_with_sync_fs"} {
				if v, ok := src[key]; ok {
					dst[key] = v
				}
			}
			if ctrd, ok := src["containerd"].(map[string]any); ok {
				for _, key := range []string{"disable_snapshot_annotations", "discard_unpacked_layers"} {
					if v, ok := ctrd[key]; ok {
						dst[key] = v
					}
				}
			}
			plugins[criImagesPlugin] = dst
			return nil
		},
	}})
}

func disabled(cfg *srvconfig.Config, id string) bool { return slices.Contains(cfg.DisabledPlugins, id) }

func setting(pluginID, key string) string { return fmt.Sprintf("plugins.%q.%s", pluginID, key) }

func checkVerifier(cfg *srvconfig.Config) []Warning {
	if disabled(cfg, verifierPlugin) {
		return []Warning{{Setting: "disabled_plugins", Text: verifierPlugin + " is disabled: containerd runs no image verifier" + afterTheFact}}
	}
	conf, _ := cfg.Plugins[verifierPlugin].(map[string]any)
	binDir := defaultBinDir
	if s, ok := conf["bin_dir"].(string); ok && s != "" {
		binDir = s
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		// containerd allows every pull when bin_dir does not exist.
		return []Warning{{Setting: setting(verifierPlugin, "bin_dir"),
			Text: fmt.Sprintf("the image verifier directory %s cannot be read (%v), so containerd verifies no pull", binDir, errors.Unwrap(err)) + afterTheFact}}
	}
	at := slices.IndexFunc(entries, func(e os.DirEntry) bool { return isPullguardWrapper(filepath.Join(binDir, e.Name())) })
	if at < 0 {
		return []Warning{{Setting: setting(verifierPlugin, "bin_dir"),
			Text: fmt.Sprintf("no wrapper calling `pullguard verify-image` in the image verifier directory %s", binDir) + afterTheFact}}
	}
	maxVerifiers := int64(defaultMaxVerifiers)
	if n, ok := conf["max_verifiers"].(int64); ok {
		maxVerifiers = n
	}
	// containerd runs the entries in name order and stops after max_verifiers (negative: all).
	if maxVerifiers >= 0 && int64(at) >= maxVerifiers {
		return []Warning{{Setting: setting(verifierPlugin, "max_verifiers"),
			Text: fmt.Sprintf("containerd runs only the first %d verifiers by name, and pullguard's %s is number %d", maxVerifiers, entries[at].Name(), at+1) + afterTheFact}}
	}
	return nil
}

// isPullguardWrapper: a script in the verifier directory that calls `pullguard verify-image`
// (the documented wrapper). The pullguard binary itself is not a verifier: containerd would
// run it without the subcommand, and every pull would fail.
func isPullguardWrapper(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	return bytes.HasPrefix(head, []byte("#!")) && bytes.Contains(head, []byte("pullguard")) &&
		bytes.Contains(head, []byte("verify-image"))
}

// checkCRI lists the CRI image settings under which CRI pulls skip verifiers.
func checkCRI(cfg *srvconfig.Config) []Warning {
	images, _ := cfg.Plugins[criImagesPlugin].(map[string]any)
	registry, _ := images["registry"].(map[string]any)
	var ws []Warning
	add := func(key, why string) {
		ws = append(ws, Warning{Setting: setting(criImagesPlugin, key),
			Text: "makes CRI (the kubelet's pulls) fall back to local pulls, which run no image verifier (" + why + ")" + afterTheFact})
	}
	if images["use_local_image_pull"] == true {
		add("use_local_image_pull", "set to true")
	}
	if v, ok := images["disable_snapshot_annotations"]; ok && v == false {
		add("disable_snapshot_annotations", "false is not supported by the transfer service")
	}
	if images["discard_unpacked_layers"] == true {
		add("discard_unpacked_layers", "not supported by the transfer service")
	}
	for _, key := range []string{"mirrors", "configs", "auths"} {
		if m, ok := registry[key].(map[string]any); ok && len(m) > 0 {
			add("registry."+key, "deprecated; use registry.config_path with hosts.toml files")
		}
	}
	if n, ok := images["max_concurrent_downloads"].(int64); ok && n != defaultMaxConcurrentDownloads {
		add("max_concurrent_downloads", `set it in plugins."io.containerd.transfer.v1.local" instead`)
	}
	if images["image_pull_with_sync_fs"] == true {
		add("image_pull_with_sync_fs", "not supported by the transfer service")
	}
	return ws
}
