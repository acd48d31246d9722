package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A container's image is judged by its own names and, where it counts, by
// what the container was created with: a tag does (the one that has since
// moved on included), an ID or a digest reference the image is not listed
// under does not.
func TestContainerNames(t *testing.T) {
	p := parsePolicy(t, `mode: enforce
default: deny
local-images: allow
allow:
  - image: reg.example/approved/**
`)
	id := "sha256:abcdef" + strings.Repeat("0", 58)
	hex := strings.TrimPrefix(id, "sha256:")
	digest := "sha256:" + strings.Repeat("1", 64)
	tests := map[string]struct {
		c       Container
		names   []string
		outcome Outcome
	}{
		"a typed tag counts": {
			c:     Container{Typed: "reg.example/approved/app:1", ImageID: id, Names: []string{"evil:1"}},
			names: []string{"reg.example/approved/app:1", "evil:1"}, outcome: Allowed},
		"a typed tag the image has is judged once": {
			c:     Container{Typed: "evil:1", ImageID: id, Names: []string{"evil:1", "evil:2"}},
			names: []string{"evil:1", "evil:2"}, outcome: Denied},
		"a tag that now points elsewhere still names what the container runs": {
			c:     Container{Typed: "reg.example/approved/app:1", ImageID: id},
			names: []string{"reg.example/approved/app:1"}, outcome: Allowed},
		"a full ID is not a name": {
			c:     Container{Typed: id, ImageID: id, Names: []string{"evil:1"}},
			names: []string{"evil:1"}, outcome: Denied},
		"a bare full ID is not a name": {
			c:     Container{Typed: hex, ImageID: id, Names: []string{"reg.example/approved/app:1"}},
			names: []string{"reg.example/approved/app:1"}, outcome: Allowed},
		"a short ID is not a name": {
			c:     Container{Typed: hex[:12], ImageID: id, Names: []string{"evil:1"}},
			names: []string{"evil:1"}, outcome: Denied},
		"a hex-only name that is not a prefix of the ID is a name": {
			c:     Container{Typed: "abc123", ImageID: id},
			names: []string{"abc123"}, outcome: Denied},
		"a foreign digest proves nothing": {
			c:     Container{Typed: "reg.example/approved/app@" + digest, ImageID: id, Names: []string{"evil:1"}},
			names: []string{"evil:1"}, outcome: Denied},
		"a digest of this content counts as the image's own name": {
			c:     Container{Typed: "reg.example/approved/app@" + digest, ImageID: id, Names: []string{"evil:1", "reg.example/approved/app@" + digest}},
			names: []string{"evil:1", "reg.example/approved/app@" + digest}, outcome: Allowed},
		"a tag with a digest is a digest reference": {
			c:     Container{Typed: "reg.example/approved/app:1@" + digest, ImageID: id, Names: []string{"evil:1"}},
			names: []string{"evil:1"}, outcome: Denied},
		"no Image field: the image's names alone": {
			c:     Container{ImageID: id, Names: []string{"reg.example/approved/app:1"}},
			names: []string{"reg.example/approved/app:1"}, outcome: Allowed},
		"no Image field and no image: the default": {
			c: Container{ImageID: id}, outcome: Denied},
		"an unparsable reference counts, and is denied": {
			c:     Container{Typed: "Not A Reference", ImageID: id, Names: []string{"evil:1"}},
			names: []string{"Not A Reference", "evil:1"}, outcome: Denied},
		"resolving now: a tag the image lacks is not its name": {
			c:     Container{Typed: "reg.example/approved/app:1", ImageID: id, Names: []string{"evil:1"}, Resolving: true},
			names: []string{"evil:1"}, outcome: Denied},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := p.ContainerNames(tt.c)
			if !slices.Equal(got, tt.names) {
				t.Errorf("ContainerNames = %q, want %q", got, tt.names)
			}
			v := p.Judge(Image{Names: got, DigestNamesProveOrigin: true}, time.Unix(0, 0), nil)
			if v.Outcome != tt.outcome {
				t.Errorf("verdict on %q = %s (%s), want %s", got, v.Outcome, v.Decision.Reason, tt.outcome)
			}
		})
	}
}
