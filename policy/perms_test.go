package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const dirWritable = ": policy directory is writable by group or others (mode %s), so they decide which policy files it holds: run chmod go-w on it (--insecure-policy-permissions overrides, for development only)"

func mkdirMode(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Chmod, not the umask-filtered mode of Mkdir.
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoadRefusesUnsafeDirectories: whoever can write a directory on the
// policy's path decides what the files in it are. Every case is a real
// directory; each refusal names the directory and is lifted by
// --insecure-policy-permissions.
func TestLoadRefusesUnsafeDirectories(t *testing.T) {
	cases := []struct {
		name string
		// setup builds a policy under base and returns the path to load
		// and the directory the refusal must name ("" when it must load).
		setup func(t *testing.T, base string) (main, dir, mode string)
	}{
		{"policy in a world-writable directory", func(t *testing.T, base string) (string, string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), mkdirMode(t, d, 0o777), "0777"
		}},
		{"policy in a group-writable directory", func(t *testing.T, base string) (string, string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), mkdirMode(t, d, 0o775), "0775"
		}},
		{"a writable directory further up", func(t *testing.T, base string) (string, string, string) {
			up := filepath.Join(base, "srv")
			d := filepath.Join(up, "pullguard", "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), mkdirMode(t, up, 0o757), "0757"
		}},
		{"writable policy.d whose files all pass (issue 10)", func(t *testing.T, base string) (string, string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "default: deny\n")
			write(t, filepath.Join(d, "policy.d", "10-enforce.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), mkdirMode(t, filepath.Join(d, "policy.d"), 0o777), "0777"
		}},
		{"writable policy.d after its file was renamed away", func(t *testing.T, base string) (string, string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: audit\n")
			write(t, filepath.Join(d, "policy.d", ".10-enforce.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), mkdirMode(t, filepath.Join(d, "policy.d"), 0o777), "0777"
		}},
		{"a link from a writable directory to a safe policy", func(t *testing.T, base string) (string, string, string) {
			safe := filepath.Join(base, "safe", "policy.yaml")
			write(t, safe, "mode: enforce\n")
			open := mkdirMode(t, filepath.Join(base, "open"), 0o777)
			if err := os.Symlink(safe, filepath.Join(open, "policy.yaml")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(open, "policy.yaml"), open, "0777"
		}},
		{"a link from a safe directory into a writable one", func(t *testing.T, base string) (string, string, string) {
			open := filepath.Join(base, "open")
			write(t, filepath.Join(open, "policy.yaml"), "mode: enforce\n")
			mkdirMode(t, open, 0o777)
			link := filepath.Join(base, "safe", "policy.yaml")
			mkdirMode(t, filepath.Dir(link), 0o755)
			if err := os.Symlink(filepath.Join(open, "policy.yaml"), link); err != nil {
				t.Fatal(err)
			}
			return link, open, "0777"
		}},
		{"safe directories load", func(t *testing.T, base string) (string, string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			write(t, filepath.Join(d, "policy.d", "10-team.yaml"), "allow:\n  - image: a/b\n")
			mkdirMode(t, d, 0o755)
			mkdirMode(t, filepath.Join(d, "policy.d"), 0o750)
			return filepath.Join(d, "policy.yaml"), "", ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			main, dir, mode := tc.setup(t, t.TempDir())
			_, err := Load(main, LoadOptions{})
			if dir == "" {
				if err != nil {
					t.Fatalf("a policy in safe directories was refused: %v", err)
				}
				return
			}
			want := dir + strings.Replace(dirWritable, "%s", mode, 1)
			if err == nil || err.Error() != want {
				t.Fatalf("error = %v\nwant %s", err, want)
			}
			if _, err := Load(main, LoadOptions{InsecurePermissions: true}); err != nil {
				t.Errorf("--insecure-policy-permissions did not override: %v", err)
			}
		})
	}
}

// TestLoadStickyDirectory: a sticky directory like /tmp is safe only when
// root owns it, and then only for files that pass themselves. As root the
// directory is root's; as another user it is that user's, and refused.
func TestLoadStickyDirectory(t *testing.T) {
	d := mkdirMode(t, filepath.Join(t.TempDir(), "tmp"), 0o777|os.ModeSticky)
	f := filepath.Join(d, "policy.yaml")
	write(t, f, "mode: enforce\n")
	_, err := Load(f, LoadOptions{})
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("a safe file in a root-owned sticky directory was refused: %v", err)
		}
		if err := os.Chmod(f, 0o666); err != nil {
			t.Fatal(err)
		}
		_, err := Load(f, LoadOptions{})
		if want := f + ": policy file is writable by group or others (mode 0666)"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error = %v, want %s...", err, want)
		}
		// The same directory owned by someone else is theirs to rearrange.
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err = Load(f, LoadOptions{})
		if want := d + ": policy directory is owned by uid 65534, neither root nor the running user (uid 0)"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error = %v, want %s...", err, want)
		}
		return
	}
	if want := d + strings.Replace(dirWritable, "%s", "0777", 1); err == nil || err.Error() != want {
		t.Fatalf("a sticky directory not owned by root: error = %v\nwant %s", err, want)
	}
}

// TestLoadRefusesForeignDirectory: a directory on the path that another
// user owns is refused even when its mode is strict. Giving a directory
// away needs root.
func TestLoadRefusesForeignDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	base := t.TempDir()
	d := filepath.Join(base, "team", "etc")
	write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
	if err := os.Chown(filepath.Join(base, "team"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(d, "policy.yaml"), LoadOptions{})
	want := filepath.Join(base, "team") + ": policy directory is owned by uid 65534, neither root nor the running user (uid 0) (--insecure-policy-permissions overrides, for development only)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
	if _, err := Load(filepath.Join(d, "policy.yaml"), LoadOptions{InsecurePermissions: true}); err != nil {
		t.Errorf("--insecure-policy-permissions did not override: %v", err)
	}
}

// TestLoadConfigMapLayout: a Kubernetes ConfigMap volume is a sticky
// directory owned by root (drwxrwxrwt) holding links into a timestamped
// directory (policy.yaml -> ..data/policy.yaml, ..data -> ..2026_11_30...),
// each file root's with mode 0644. As root that passes; as another user the
// sticky directory is that user's and is refused.
func TestLoadConfigMapLayout(t *testing.T) {
	vol := mkdirMode(t, filepath.Join(t.TempDir(), "pullguard"), 0o777|os.ModeSticky)
	ts := filepath.Join(vol, "..2026_11_30_12_00_00.000000001")
	write(t, filepath.Join(ts, "policy.yaml"), "mode: enforce\nallow:\n  - image: a/b\n")
	mkdirMode(t, ts, 0o755)
	if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/policy.yaml", filepath.Join(vol, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(vol, "policy.yaml"), LoadOptions{})
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("a ConfigMap volume was refused: %v", err)
		}
		// A timestamped directory others can write is theirs, link or not.
		mkdirMode(t, ts, 0o777)
		_, err := Load(filepath.Join(vol, "policy.yaml"), LoadOptions{})
		if want := ts + strings.Replace(dirWritable, "%s", "0777", 1); err == nil || err.Error() != want {
			t.Fatalf("error = %v\nwant %s", err, want)
		}
		return
	}
	if want := vol + strings.Replace(dirWritable, "%s", "0777", 1); err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}

// TestLoadReadOnlyMount: a directory others could write by its mode, on a
// file system mounted read-only (as kubelet mounts a ConfigMap volume, whose
// root is mode 0777), cannot be written through that mount by anyone. The
// same directory mounted read-write is refused.
func TestLoadReadOnlyMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system needs root")
	}
	vol := t.TempDir()
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "mode=0777"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(vol, unix.MNT_DETACH) })
	write(t, filepath.Join(vol, "policy.yaml"), "mode: enforce\nallow:\n  - image: a/b\n")
	mkdirMode(t, vol, 0o777)

	_, err := Load(filepath.Join(vol, "policy.yaml"), LoadOptions{})
	if want := vol + strings.Replace(dirWritable, "%s", "0777", 1); err == nil || err.Error() != want {
		t.Fatalf("read-write mount: error = %v\nwant %s", err, want)
	}
	if err := unix.Mount("", vol, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if _, err := Load(filepath.Join(vol, "policy.yaml"), LoadOptions{}); err != nil {
		t.Fatalf("read-only mount was refused: %v", err)
	}
}
