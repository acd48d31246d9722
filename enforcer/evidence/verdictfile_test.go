package evidence

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// keptRun is one run of the daemon over the same state directory: a judge
// over o with its verdict file.
type keptRun struct {
	j    *Judge
	f    *VerdictFile
	hook *logtest.Hook
}

func newRun(t *testing.T, state string, o Origins, sigs *countingSignatures) keptRun {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	var j *Judge
	if sigs != nil {
		j = New(sigs, o, log)
	} else {
		j = New(nil, o, log)
	}
	f := NewVerdictFile(state, log)
	j.KeepVerdicts(f)
	return keptRun{j, f, hook}
}

func (r keptRun) judge(p *policy.Policy, img policy.Image, now time.Time) policy.Verdict {
	return r.j.Pass(context.Background()).Judge(p, img, now)
}

func (r keptRun) warned(t *testing.T, substr string) bool {
	t.Helper()
	for _, e := range r.hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

func stateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestVerdictFileRestart: verdicts reached on verified evidence survive a
// restart under the same policy, so the registry is not asked again about
// them; under another policy, after they expire, or for another question
// it is.
func TestVerdictFileRestart(t *testing.T) {
	p := parse(t, denyLocal)
	state := stateDir(t)
	served := map[string]bool{"reg.example/approved/app@" + d1: true, "reg.example/approved/app@" + d2: true}
	img2 := policy.Image{Names: []string{"reg.example/approved/app:2", "reg.example/approved/app@" + d2}, Digest: d2}

	o := &origins{served: served}
	first := newRun(t, state, o, nil)
	first.f.load(p.Hash, t0)
	for _, img := range []policy.Image{pulled, img2} {
		if v := first.judge(p, img, t0); v.Outcome != policy.Allowed {
			t.Fatalf("first run: %s (%s)", v.Outcome, v.Decision.Reason)
		}
	}
	if err := first.f.save(p.Hash, t0); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(first.f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("verdict file mode %04o, want 0600", st.Mode().Perm())
	}

	o2 := &origins{} // a registry that would now deny: nothing may be asked of it
	second := newRun(t, state, o2, nil)
	now := t0.Add(10 * time.Minute)
	second.f.load(p.Hash, now)
	for _, img := range []policy.Image{pulled, img2} {
		v := second.judge(p, img, now)
		if v.Outcome != policy.Allowed || v.VouchedBy != "reg.example/approved/app@"+img.Digest || v.PolicyHash != p.Hash {
			t.Errorf("after a restart: %s, vouched by %q (%s)", v.Outcome, v.VouchedBy, v.Decision.Reason)
		}
	}
	if n := o2.count(); n != 0 {
		t.Errorf("after a restart the registry was asked %d times about images judged before, want 0", n)
	}
	// Other names on the same content are another question.
	more := policy.Image{Names: []string{"reg.example/approved/app:1", "reg.example/approved/other:1"}, Digest: d1}
	if v := second.judge(p, more, now); v.Outcome != policy.Denied || o2.count() == 0 {
		t.Errorf("other names: %s after %d questions, want denied after asking", v.Outcome, o2.count())
	}

	// Nothing new was reached but the denial, which is not kept: the file
	// is not written again, and still holds both verdicts.
	if err := second.f.save(p.Hash, now); err != nil {
		t.Fatal(err)
	}
	third := newRun(t, state, &origins{}, nil)
	third.f.load(p.Hash, now)
	if v := third.judge(p, img2, now); v.Outcome != policy.Allowed {
		t.Errorf("a verdict restored but not yet asked about is kept by the next save: %s", v.Outcome)
	}

	// Another policy: the kept verdicts are of no use.
	reloaded := parse(t, denyLocal+"  - image: reg.example/more/**\n")
	o4 := &origins{served: served}
	fourth := newRun(t, state, o4, nil)
	fourth.f.load(reloaded.Hash, now)
	fourth.judge(reloaded, pulled, now)
	if o4.count() != 1 {
		t.Errorf("under another policy: %d questions, want 1", o4.count())
	}
	// Expired: asked again.
	o5 := &origins{served: served}
	fifth := newRun(t, state, o5, nil)
	later := t0.Add(verdictTTL + time.Second)
	fifth.f.load(p.Hash, later)
	fifth.judge(p, pulled, later)
	if o5.count() != 1 {
		t.Errorf("after the verdicts expired: %d questions, want 1", o5.count())
	}
}

// TestVerdictFileSignatures: a verdict on a verified signature survives a
// restart with the key that verified it; a policy whose key set changed
// asks again.
func TestVerdictFileSignatures(t *testing.T) {
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, "mode: enforce\nlocal-images: allow\nallow:\n  - image: reg.example/approved/**\n    signed-by: [{key: "+key+"}]\n")
	state := stateDir(t)
	sigs := &countingSignatures{Signatures: enforcertest.NewSignatures(map[string]policy.SignatureStatus{d1: policy.SignatureVerified})}
	first := newRun(t, state, nil, sigs)
	first.f.load(p.Hash, t0)
	if v := first.judge(p, pulled, t0); v.Outcome != policy.Allowed {
		t.Fatalf("signed: %s", v.Outcome)
	}
	if err := first.f.save(p.Hash, t0); err != nil {
		t.Fatal(err)
	}
	sigs2 := &countingSignatures{Signatures: enforcertest.NewSignatures(nil)}
	second := newRun(t, state, nil, sigs2)
	second.f.load(p.Hash, t0.Add(time.Minute))
	v := second.judge(p, pulled, t0.Add(time.Minute))
	if v.Outcome != policy.Allowed || sigs2.count() != 0 {
		t.Errorf("after a restart: %s after %d signature questions, want allowed after none", v.Outcome, sigs2.count())
	}
	if s := v.Decision.Signature; s == nil || s.Result.Key == nil || s.Result.Key.Fingerprint != p.Allow[0].SignedBy.Keys[0].Fingerprint {
		t.Errorf("the restored verdict does not name the key that verified: %+v", s)
	}
}

// TestVerdictFileDistrusted: a file that is damaged, of another format,
// writable by others or a link is discarded with a warning and removed;
// the images are asked about again; so is everything when the state
// directory is not root's alone (nothing is written there either).
func TestVerdictFileDistrusted(t *testing.T) {
	p := parse(t, denyLocal)
	for name, spoil := range map[string]func(t *testing.T, path string) string{
		"damaged": func(t *testing.T, path string) string {
			data, _ := os.ReadFile(path)
			writeFileMode(t, path, []byte(strings.Replace(string(data), "approved/app", "approved/apq", 1)), 0o600)
			return "checksum"
		},
		"truncated": func(t *testing.T, path string) string {
			data, _ := os.ReadFile(path)
			writeFileMode(t, path, data[:len(data)/2], 0o600)
			return "damaged"
		},
		"another format": func(t *testing.T, path string) string {
			data, _ := os.ReadFile(path)
			writeFileMode(t, path, []byte(strings.Replace(string(data), `"format":1`, `"format":2`, 1)), 0o600)
			return "format version 2"
		},
		"writable by others": func(t *testing.T, path string) string {
			if err := os.Chmod(path, 0o666); err != nil {
				t.Fatal(err)
			}
			return "writable by group or others"
		},
		"a link": func(t *testing.T, path string) string {
			target := path + ".elsewhere"
			if err := os.Rename(path, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			return "symbolic link"
		},
	} {
		t.Run(name, func(t *testing.T) {
			state := stateDir(t)
			first := newRun(t, state, &origins{served: served1}, nil)
			first.f.load(p.Hash, t0)
			first.judge(p, pulled, t0)
			if err := first.f.save(p.Hash, t0); err != nil {
				t.Fatal(err)
			}
			why := spoil(t, first.f.Path())
			o := &origins{served: served1}
			second := newRun(t, state, o, nil)
			second.f.load(p.Hash, t0)
			if !second.warned(t, why) || !second.warned(t, "discarded") {
				t.Errorf("no warning that the file was discarded for %q: %v", why, second.hook.AllEntries())
			}
			if _, err := os.Lstat(first.f.Path()); !os.IsNotExist(err) {
				t.Errorf("the distrusted file is still there: %v", err)
			}
			if v := second.judge(p, pulled, t0); v.Outcome != policy.Allowed || o.count() != 1 {
				t.Errorf("after discarding: %s after %d questions, want allowed after 1", v.Outcome, o.count())
			}
		})
	}

	t.Run("state directory reachable by others", func(t *testing.T) {
		state := stateDir(t)
		if err := os.Chmod(state, 0o755); err != nil {
			t.Fatal(err)
		}
		o := &origins{served: served1}
		r := newRun(t, state, o, nil)
		r.f.load(p.Hash, t0)
		r.judge(p, pulled, t0)
		if err := r.f.save(p.Hash, t0); err != nil {
			t.Fatal(err)
		}
		if !r.warned(t, "chmod 700") {
			t.Errorf("no warning about the state directory: %v", r.hook.AllEntries())
		}
		if _, err := os.Stat(r.f.Path()); !os.IsNotExist(err) {
			t.Errorf("verdicts were written into a state directory others can reach: %v", err)
		}
	})
}

// TestVerdictFileMissingStateDir: a state directory that does not exist
// yet is made, root's alone.
func TestVerdictFileMissingStateDir(t *testing.T) {
	p := parse(t, denyLocal)
	state := filepath.Join(t.TempDir(), "new")
	r := newRun(t, state, &origins{served: served1}, nil)
	r.f.load(p.Hash, t0)
	r.judge(p, pulled, t0)
	if err := r.f.save(p.Hash, t0); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(state)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v, mode %v", err, st.Mode())
	}
	if _, err := os.Stat(r.f.Path()); err != nil {
		t.Error(err)
	}
}

func writeFileMode(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
