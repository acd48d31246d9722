package authz

import (
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// TestImageMounts: an image mount's source is judged as the container's
// own image is; a refusal says which mount.
func TestImageMounts(t *testing.T) {
	create := func(mounts string) string {
		b := `{"Image":"` + reg + `/approved/busybox:1.0","Cmd":["true"],"HostConfig":{"Mounts":[` + mounts + `]}}`
		return rawCall("POST", "/v1.48/containers/create", jsonHeaders(b), b)
	}
	service := func(mounts string) string {
		b := `{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"` + reg + `/approved/busybox:1.0","Mounts":[` + mounts + `]}}}`
		return rawCall("POST", "/v1.48/services/create", jsonHeaders(b), b)
	}
	mount := func(typ, source string) string {
		return `{"Type":"` + typ + `","Source":"` + source + `","Target":"/x"}`
	}
	evilPull := reg + "/evil/miner:1.0 is not allowed: no allow rule matches" + defaultDeny
	for _, tc := range []authzCase{
		{name: "allowed source", call: create(mount("image", reg+"/approved/busybox:1.0")), allow: true},
		{name: "allowed source by short ID", call: create(mount("image", "18c79d2bf870")), allow: true},
		{name: "bind and volume mounts are not images", call: create(mount("bind", "/srv") + "," + mount("volume", reg+"/evil/miner:1.0")), allow: true},
		{name: "nameless source by ID", call: create(mount("image", "dead00000000")),
			msg: "pullguard: cannot mount image dead00000000 at /x: image dead00000000 is not allowed: the image has no name, only an ID, so where it came from cannot be judged",
			ref: "dead00000000", imageID: blankID},
		{name: "disallowed source by name", call: create(mount("image", reg+"/evil/miner:1.0")),
			msg: "pullguard: cannot mount image " + reg + "/evil/miner:1.0 at /x: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
		{name: "disallowed source by digest under an allowed repository", call: create(mount("image", reg+"/approved/busybox@"+evilID)),
			msg:     "pullguard: cannot mount image " + reg + "/approved/busybox@" + evilID + " at /x: " + reg + "/approved/busybox@" + evilID + " (image 9f477abac9c8) has no allowed name: " + evilPull,
			ref:     reg + "/evil/miner:1.0",
			imageID: evilID},
		{name: "second mount disallowed", call: create(mount("image", "18c79d2bf870") + "," + mount("image", evilID)),
			msg: "pullguard: cannot mount image " + evilID + " at /x: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
		{name: "type in another case", call: create(mount("IMAGE", "9f477abac9c8")),
			msg: "pullguard: cannot mount image 9f477abac9c8 at /x: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
		{name: "source Docker does not have", call: create(mount("image", reg+"/approved/busybox:1.1")),
			msg: "pullguard: cannot mount image " + reg + "/approved/busybox:1.1 at /x: " + reg + "/approved/busybox:1.1 is not allowed: Docker has no such image to mount, so its content cannot be judged",
			ref: reg + "/approved/busybox:1.1"},
		{name: "source that cannot be looked up", call: create(mount("image", reg+"/approved/flaky:1")),
			msgPrefix: "pullguard: cannot mount image " + reg + "/approved/flaky:1 at /x: ", ref: reg + "/approved/flaky:1", failed: true},
		{name: "keys in lower case", call: rawCall("POST", "/v1.48/containers/create", jsonHeaders("x"),
			`{"image":"18c79d2bf870","hostconfig":{"mounts":[{"type":"image","source":"9f477abac9c8"}]}}`),
			msg: "pullguard: cannot mount image 9f477abac9c8: image 9f477abac9c8 has no allowed name: " + evilPull, ref: reg + "/evil/miner:1.0", imageID: evilID},
		{name: "service mount", call: service(mount("image", "dead00000000")),
			msg: "pullguard: cannot mount image dead00000000 at /x: image dead00000000 is not allowed: the image has no name, only an ID, so where it came from cannot be judged",
			ref: "dead00000000", imageID: blankID},
		{name: "service with an allowed mount", call: service(mount("image", "18c79d2bf870")), allow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, loadPolicy(t, nil))
			res := f.call(t, pathAuthZReq, tc.call)
			checkVerdict(t, tc, res, f.rec.all(), policy.ModeEnforce)
		})
	}
}
