package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// profiles are the keyless signers of well-known public images, which a
// signed-by entry can name (profile: kubernetes) instead of spelling them
// out. Kept here, in one reviewed place: a change to this table changes
// what every policy naming the profile accepts.
var profiles = map[string][]Identity{
	// registry.k8s.io's core images: the release service accounts seen on
	// current releases, and the promoter that signed older ones.
	"kubernetes": {
		{Issuer: "https://accounts.google.com", Subject: "krel-trust@k8s-releng-prod.iam.gserviceaccount.com"},
		{Issuer: "https://accounts.google.com", Subject: "krel-staging@k8s-releng-prod.iam.gserviceaccount.com"},
		{Issuer: "https://accounts.google.com", Subject: "k8s-infra-gcr-promoter@k8s-artifacts-prod.iam.gserviceaccount.com"},
	},
	// Chainguard's free images (cgr.dev/chainguard): their release workflow.
	"chainguard": {
		{Issuer: "https://token.actions.githubusercontent.com", Subject: "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"},
	},
	// distroless (gcr.io/distroless).
	"distroless": {
		{Issuer: "https://accounts.google.com", Subject: "keyless@distroless.iam.gserviceaccount.com"},
	},
}

// isProfile tells a profile entry: it names a profile.
func isProfile(item *yaml.Node) bool {
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value == "profile" {
			return true
		}
	}
	return false
}

// profileEntry expands a profile entry into its signers, each placed at
// the entry and marked with the profile's name.
func (l *loader) profileEntry(item *yaml.Node) []*Identity {
	var out []*Identity
	l.mapping(item, signedByKeys, func(key string, k, v *yaml.Node) {
		if key != "profile" {
			l.errorf(k, "signed-by: a profile entry names only the profile; %s: belongs in an entry of its own", key)
			return
		}
		name, ok := l.str(v, key)
		if !ok {
			return
		}
		ids, ok := profiles[name]
		if !ok {
			l.errorf(v, "signed-by: profile: unknown profile %q (known: %s)", name, strings.Join(ProfileNames(), ", "))
			return
		}
		for _, id := range ids {
			id.Profile = name
			id.Source = Position{File: l.fileName, Line: item.Line, Column: item.Column}
			out = append(out, &id)
		}
	})
	return out
}

// ProfileNames lists the built-in profiles.
func ProfileNames() []string {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ProfilesUsed says what each profile the policy names expands to, one
// line a profile, for policy validate.
func (p *Policy) ProfilesUsed() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range p.Allow {
		if r.SignedBy == nil {
			continue
		}
		for _, id := range r.SignedBy.Identities {
			if id.Profile == "" || seen[id.Profile] {
				continue
			}
			seen[id.Profile] = true
			var signers []string
			for _, pid := range profiles[id.Profile] {
				signers = append(signers, pid.String())
			}
			out = append(out, fmt.Sprintf("profile %s: %s", id.Profile, strings.Join(signers, ", ")))
		}
	}
	return out
}
