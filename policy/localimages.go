package policy

import "go.yaml.in/yaml/v3"

// LocalImages says whether an allowed name is enough for content that was
// made on the host (loaded, imported, built, committed) rather than pulled
// from a repository the policy allows.
type LocalImages string

const (
	// LocalImagesDeny, the default: a name is allowed only on content that
	// came from a repository the policy allows. An allowed name proves
	// nothing about content: `docker load`, import, build and commit put
	// any name on any content.
	LocalImagesDeny LocalImages = "deny"
	// LocalImagesAllow judges names alone, as before the setting existed.
	LocalImagesAllow LocalImages = "allow"
)

// localImages reads the top-level local-images setting, which, like mode,
// may be set in one file only.
func (l *loader) localImages(k, v *yaml.Node) {
	if s, ok := l.enum(v, "local-images", string(LocalImagesDeny), string(LocalImagesAllow)); ok && l.once("local-images", k) {
		l.policy.LocalImages = LocalImages(s)
	}
}
