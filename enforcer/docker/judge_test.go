package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// removalLine renders a planned removal: name, then "last" or "blocked".
func removalLine(r removal) string {
	switch {
	case r.Blocked != nil:
		return r.Name + " blocked"
	case r.Last:
		return r.Name + " last"
	}
	return r.Name
}

func TestPlanImage(t *testing.T) {
	p := testPolicy(t, policy.ModeEnforce, policy.RunningKeep)
	tests := []struct {
		name    string
		tags    []string
		digests []string
		only    string
		want    []string
		empties bool
	}{
		{name: "dangling image: nothing to judge"},
		{name: "Docker's placeholders are no names", tags: []string{"<none>:<none>"}, digests: []string{"<none>@<none>"}},
		{name: "one denied tag goes with the image", tags: []string{"evil:1"},
			want: []string{"evil:1 last"}, empties: true},
		{name: "a denied tag takes its repository's digest along",
			tags: []string{"evil:1"}, digests: []string{"evil@" + digestB},
			want: []string{"evil:1 last"}, empties: true},
		{name: "allowed and denied tag: only the denied one goes",
			tags:    []string{"reg.example/approved/app:1", "evil:1"},
			digests: []string{"reg.example/approved/app@" + digestB, "evil@" + digestB},
			want:    []string{"evil:1"}},
		{name: "a digest reference of a repository with an allowed tag is not judged on its own",
			tags: []string{"reg.example/pinned/app:v1"}, digests: []string{"reg.example/pinned/app@" + digestB},
			want: []string{"reg.example/pinned/app:v1 last"}, empties: true},
		{name: "a digest reference without a tag in its repository is judged on its own",
			tags: []string{"reg.example/approved/app:1"}, digests: []string{"evil@" + digestB},
			want: []string{"evil@" + digestB}},
		{name: "a tag pulled as an allowed pinned digest stays; a denied tag of the same content goes",
			tags: []string{"reg.example/pinned/app:latest", "reg.example/pinned/app:edge"}, digests: []string{"reg.example/pinned/app@" + digestA},
			want: []string{"reg.example/pinned/app:edge"}},
		{name: "an allowed digest reference stays, and so does the one tag that would take it along",
			tags: []string{"reg.example/pinned/app:edge"}, digests: []string{"reg.example/pinned/app@" + digestA},
			want: []string{"reg.example/pinned/app:edge blocked"}},
		{name: "a deny rule listing the digest a tag was pulled as removes the tag",
			tags: []string{"reg.example/approved/app:1"}, digests: []string{"reg.example/approved/app@" + digestC},
			want: []string{"reg.example/approved/app:1 last"}, empties: true},
		{name: "an allowed digest reference keeps the image even without tags",
			digests: []string{"reg.example/pinned/app@" + digestA, "evil@" + digestB},
			want:    []string{"evil@" + digestB}},
		{name: "only: just the event's name, in any spelling",
			tags: []string{"evil:1", "evil:2"}, only: "docker.io/library/evil:2",
			want: []string{"evil:2"}},
		{name: "only: the last name", tags: []string{"evil:2"}, only: "evil:2",
			want: []string{"evil:2 last"}, empties: true},
		{name: "only: an allowed name asks for nothing", tags: []string{"reg.example/approved/app:1", "evil:1"},
			only: "reg.example/approved/app:1"},
		{name: "only: a name the image does not have asks for nothing", tags: []string{"evil:1"}, only: "evil:9"},
		{name: "only: a digest reference whose repository has tags follows the tags",
			tags: []string{"evil:1"}, digests: []string{"evil@" + digestB}, only: "evil@" + digestB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var only []string
			if tt.only != "" {
				only = []string{tt.only}
			}
			plan := planImage(Image{ID: id(1), RepoTags: tt.tags, RepoDigests: tt.digests}, p, testNow, only, nil)
			var got []string
			for _, r := range plan.Removals {
				got = append(got, removalLine(r))
				if r.Decision.Allowed || r.Decision.Input != r.Name {
					t.Errorf("removal %s carries decision %+v", r.Name, r.Decision)
				}
				if r.Blocked != nil && !errors.Is(r.Blocked, ErrWouldRemoveAllowed) {
					t.Errorf("Blocked = %v", r.Blocked)
				}
			}
			eq(t, "removals", got, tt.want)
			if plan.Empties != tt.empties {
				t.Errorf("Empties = %v, want %v", plan.Empties, tt.empties)
			}
		})
	}
}

func TestJudgeContainer(t *testing.T) {
	deny := testPolicy(t, policy.ModeEnforce, policy.RunningKeep)
	allowAll, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte("mode: enforce\ndefault: allow\nlocal-images: allow\ndeny:\n  - image: evil\n")})
	if err != nil {
		t.Fatal(err)
	}
	imgID := "sha256:abcdef" + strings.Repeat("0", 58)
	hex := strings.TrimPrefix(imgID, "sha256:")
	approved := &Image{ID: imgID, RepoTags: []string{"reg.example/approved/app:1"}}
	evil := &Image{ID: imgID, RepoTags: []string{"evil:1"}}
	nameless := &Image{ID: imgID}
	tests := []struct {
		name     string
		p        *policy.Policy
		typed    string
		img      *Image
		allowed  bool
		decision string // the Decision's Input
	}{
		{"allowed name", deny, "reg.example/approved/app:1", approved, true, "reg.example/approved/app:1"},
		{"allowed image's short ID", deny, hex[:12], approved, true, "reg.example/approved/app:1"},
		{"allowed image's full ID", deny, imgID, approved, true, "reg.example/approved/app:1"},
		{"allowed image's bare full ID", deny, hex, approved, true, "reg.example/approved/app:1"},
		{"denied image's short ID", deny, hex[:4], evil, false, "evil:1"},
		{"denied name", deny, "evil:1", evil, false, "evil:1"},
		{"denied digest reference", deny, "evil@" + digestB, &Image{ID: imgID, RepoDigests: []string{"evil@" + digestB}}, false, "evil@" + digestB},
		{"allowed pinned digest", deny, "reg.example/pinned/app@" + digestA,
			&Image{ID: imgID, RepoDigests: []string{"reg.example/pinned/app@" + digestA}}, true, "reg.example/pinned/app@" + digestA},
		{"any allowed name of the image allows it", deny, "evil:1",
			&Image{ID: imgID, RepoTags: []string{"evil:1", "reg.example/approved/app:1"}}, true, "reg.example/approved/app:1"},
		{"an allowed name that moved on to a newer image", deny, "reg.example/approved/app:1", nameless, true, "reg.example/approved/app:1"},
		{"a short ID that is also a hex-only name is judged as an ID", deny, "abcdef", nameless, false, "abcdef"},
		{"nameless image under default deny", deny, imgID, nameless, false, imgID},
		{"image gone, under default deny", deny, "", nil, false, imgID},
		{"nameless image under default allow", allowAll, imgID, nameless, true, imgID},
		{"denied under default allow", allowAll, "evil", &Image{ID: imgID, RepoTags: []string{"evil:latest"}}, false, "evil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judgeContainer(tt.typed, imgID, tt.img, tt.p, testNow, nil)
			if v.Allowed != tt.allowed || v.Decision.Input != tt.decision {
				t.Errorf("verdict = allowed %v by %q (%s), want allowed %v by %q", v.Allowed, v.Decision.Input, v.Decision.Reason, tt.allowed, tt.decision)
			}
			if v.Decision.Reason == "" || v.Decision.Allowed != v.Allowed {
				t.Errorf("decision does not explain the verdict: %+v", v.Decision)
			}
		})
	}
}

func TestScan(t *testing.T) {
	f := newFake()
	f.addImage(id(1), "reg.example/approved/app:1", "evil:1")                           // untag evil:1
	f.addImage(id(2), "reg.example/evil/miner:1")                                       // used by a running container
	f.addImage(id(3), "reg.example/evil/old:1")                                         // used by an exited container
	f.addImage(id(4), "reg.example/pinned/app:edge", "reg.example/pinned/app@"+digestA) // blocked
	f.addImage(id(5))                                                                   // dangling
	f.addContainer(Container{ID: cid(2), Name: "miner", Image: "reg.example/evil/miner:1", ImageID: id(2), State: "running"})
	f.addContainer(Container{ID: cid(3), Name: "old", Image: "reg.example/evil/old:1", ImageID: id(3), State: "exited"})
	f.addContainer(Container{ID: cid(1), Name: "ok", Image: "reg.example/approved/app:1", ImageID: id(1), State: "running"})

	render := func(fs []enforcer.Finding) []string {
		var out []string
		for _, f := range fs {
			s := fmt.Sprintf("%s %s %s %s", f.Kind, f.Action, f.Reference, shortID(f.ImageID))
			if f.ContainerID != "" {
				s += fmt.Sprintf(" %s/%s/%s", shortID(f.ContainerID), f.ContainerName, f.ContainerState)
			}
			if f.Note != "" {
				s += " (" + f.Note + ")"
			}
			if f.Decision.Allowed || f.Decision.Reason == "" {
				s += " BAD DECISION"
			}
			out = append(out, s)
		}
		return out
	}
	for _, tt := range []struct {
		running policy.Running
		want    []string
	}{{
		running: policy.RunningKeep,
		want: []string{
			"container reported reg.example/evil/miner:1 " + shortID(id(2)) + " " + shortID(cid(2)) + "/miner/running",
			"container removed reg.example/evil/old:1 " + shortID(id(3)) + " " + shortID(cid(3)) + "/old/exited",
			"image untagged evil:1 " + shortID(id(1)),
			"image reported reg.example/evil/miner:1 " + shortID(id(2)) + " (in use by container " + shortID(cid(2)) + ")",
			"image removed reg.example/evil/old:1 " + shortID(id(3)),
			"image failed reg.example/pinned/app:edge " + shortID(id(4)) + " (removing it would also remove an allowed digest reference reg.example/pinned/app@" + digestA + ")",
		},
	}, {
		running: policy.RunningStop,
		want: []string{
			"container stopped reg.example/evil/miner:1 " + shortID(id(2)) + " " + shortID(cid(2)) + "/miner/running",
			"container removed reg.example/evil/old:1 " + shortID(id(3)) + " " + shortID(cid(3)) + "/old/exited",
			"image untagged evil:1 " + shortID(id(1)),
			"image removed reg.example/evil/miner:1 " + shortID(id(2)),
			"image removed reg.example/evil/old:1 " + shortID(id(3)),
			"image failed reg.example/pinned/app:edge " + shortID(id(4)) + " (removing it would also remove an allowed digest reference reg.example/pinned/app@" + digestA + ")",
		},
	}} {
		t.Run(string(tt.running), func(t *testing.T) {
			got, err := Scan(context.Background(), f, testPolicy(t, policy.ModeAudit, tt.running), testNow, nil)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "findings", render(got), tt.want)
			eq(t, "mutations", f.mutationsSoFar(), nil)
		})
	}

	t.Run("a listing error is returned", func(t *testing.T) {
		f.setFail("list-images", errors.New("connection reset"))
		defer f.setFail("list-images", nil)
		if _, err := Scan(context.Background(), f, testPolicy(t, policy.ModeAudit, policy.RunningKeep), testNow, nil); err == nil ||
			!strings.Contains(err.Error(), "listing images") {
			t.Errorf("err = %v", err)
		}
	})
}
