package containerd

import (
	"testing"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestEventSubject checks the decoding of the events the guard subscribes
// to, through typeurl as they arrive from containerd.
func TestEventSubject(t *testing.T) {
	cases := []struct {
		name      string
		event     any
		image, id string
	}{
		{"image create", &eventtypes.ImageCreate{Name: "registry.local/a:1"}, "registry.local/a:1", ""},
		{"image update", &eventtypes.ImageUpdate{Name: "sha256:abc"}, "sha256:abc", ""},
		{"container create", &eventtypes.ContainerCreate{ID: "c1", Image: "x"}, "", "c1"},
		{"task create", &eventtypes.TaskCreate{ContainerID: "c2"}, "", "c2"},
		{"task start", &eventtypes.TaskStart{ContainerID: "c3", Pid: 7}, "", "c3"},
		{"other event", &eventtypes.ImageDelete{Name: "x"}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			anyEv, err := typeurl.MarshalAny(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			v, err := typeurl.UnmarshalAny(anyEv)
			if err != nil {
				t.Fatal(err)
			}
			image, id := eventSubject(v)
			if image != tc.image || id != tc.id {
				t.Errorf("got (%q, %q), want (%q, %q)", image, id, tc.image, tc.id)
			}
		})
	}
}

// TestContainerAnnotations checks that the runtime spec's annotations,
// where CRI names a container's image, are read from the spec as the client
// stores it (typeurl, registered by the client package).
func TestContainerAnnotations(t *testing.T) {
	spec, err := typeurl.MarshalAny(&specs.Spec{
		Version:     "1.0.2",
		Annotations: map[string]string{criImageName: "registry.local/a:1"},
		Process:     &specs.Process{Args: []string{"sh"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := containerOf(containers.Container{ID: "c1", Image: "", Spec: spec})
	if got.Annotations[criImageName] != "registry.local/a:1" {
		t.Errorf("annotations %v", got.Annotations)
	}
	if got := containerOf(containers.Container{ID: "c2"}); got.Annotations != nil {
		t.Errorf("no spec: annotations %v", got.Annotations)
	}
}
