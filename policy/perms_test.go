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

// dirRefusal is the refusal of a directory others can write, with mode,
// reached through the link via ("" if none).
func dirRefusal(dir, mode, via string) string {
	msg := dir + strings.Replace(dirWritable, "%s", mode, 1)
	if via != "" {
		msg = strings.TrimSuffix(msg, " "+overrideHint) + ", reached through the link " + via + " " + overrideHint
	}
	return msg
}

// stickyRefusal is the refusal of a sticky directory others can write,
// where a name is looked up.
func stickyRefusal(dir, via string) string {
	msg := dir + ": policy directory is writable by group or others (mode 1777); the sticky bit stops them removing files here, " +
		"not creating a missing policy.d, drop-in or link: run chmod go-w on it, or keep the policy where only root can write " +
		"(such as /etc/pullguard) " + overrideHint
	if via != "" {
		msg = strings.TrimSuffix(msg, " "+overrideHint) + ", reached through the link " + via + " " + overrideHint
	}
	return msg
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// TestLoadRefusesUnsafeDirectories: whoever can write a directory on the
// policy's path decides what the files in it are. Each refusal names the
// directory and is lifted by --insecure-policy-permissions.
func TestLoadRefusesUnsafeDirectories(t *testing.T) {
	cases := []struct {
		name string
		// setup builds a policy under base and returns the path to load
		// and the refusal ("" when it must load).
		setup func(t *testing.T, base string) (main, want string)
	}{
		{"policy in a world-writable directory", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), dirRefusal(mkdirMode(t, d, 0o777), "0777", "")
		}},
		{"policy in a group-writable directory", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), dirRefusal(mkdirMode(t, d, 0o775), "0775", "")
		}},
		{"a writable directory further up", func(t *testing.T, base string) (string, string) {
			up := filepath.Join(base, "srv")
			d := filepath.Join(up, "pullguard", "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), dirRefusal(mkdirMode(t, up, 0o757), "0757", "")
		}},
		{"writable policy.d whose files all pass (issue 10)", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "default: deny\n")
			write(t, filepath.Join(d, "policy.d", "10-enforce.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), dirRefusal(mkdirMode(t, filepath.Join(d, "policy.d"), 0o777), "0777", "")
		}},
		{"writable policy.d after its file was renamed away", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: audit\n")
			write(t, filepath.Join(d, "policy.d", ".10-enforce.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), dirRefusal(mkdirMode(t, filepath.Join(d, "policy.d"), 0o777), "0777", "")
		}},
		{"a link from a writable directory to a safe policy", func(t *testing.T, base string) (string, string) {
			safe := filepath.Join(base, "safe", "policy.yaml")
			write(t, safe, "mode: enforce\n")
			open := mkdirMode(t, filepath.Join(base, "open"), 0o777)
			return symlink(t, safe, filepath.Join(open, "policy.yaml")), dirRefusal(open, "0777", "")
		}},
		{"a link from a safe directory into a writable one", func(t *testing.T, base string) (string, string) {
			open := filepath.Join(base, "open")
			write(t, filepath.Join(open, "policy.yaml"), "mode: enforce\n")
			mkdirMode(t, open, 0o777)
			link := symlink(t, filepath.Join(open, "policy.yaml"), filepath.Join(base, "safe", "policy.yaml"))
			return link, dirRefusal(open, "0777", link)
		}},
		{"safe directories load", func(t *testing.T, base string) (string, string) {
			d := filepath.Join(base, "etc")
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			write(t, filepath.Join(d, "policy.d", "10-team.yaml"), "allow:\n  - image: a/b\n")
			mkdirMode(t, d, 0o755)
			mkdirMode(t, filepath.Join(d, "policy.d"), 0o750)
			return filepath.Join(d, "policy.yaml"), ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			main, want := tc.setup(t, t.TempDir())
			requireRefusal(t, main, want)
		})
	}
}

// requireRefusal loads main and fails unless it is refused with want
// exactly (loads, when want is ""), and loads with
// --insecure-policy-permissions.
func requireRefusal(t *testing.T, main, want string) {
	t.Helper()
	_, err := Load(main, LoadOptions{})
	if want == "" {
		if err != nil {
			t.Fatalf("a safe policy was refused: %v", err)
		}
		return
	}
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
	if _, err := Load(main, LoadOptions{InsecurePermissions: true}); err != nil {
		t.Errorf("--insecure-policy-permissions did not override: %v", err)
	}
}

// TestLoadFollowsLinks (issue 22): every link on the way to a policy file,
// policy.d/, a drop-in or a key is followed as the kernel would, its owner
// checked, and every directory it leads through checked, where it leads.
func TestLoadFollowsLinks(t *testing.T) {
	const other = 65534 // nobody
	key, err := os.ReadFile("testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		needRoot bool // to give a link to another user
		setup    func(t *testing.T, base string) (main, want string)
	}{
		{"policy.d a link to a world-writable directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			// A link someone left there, to a root-owned file in a safe
			// directory: only the open directory is wrong.
			write(t, filepath.Join(base, "upper", "all.yaml"), "allow:\n  - image: \"**\"\n")
			open := filepath.Join(base, "shared")
			symlink(t, filepath.Join(base, "upper", "all.yaml"), filepath.Join(open, "10-all.yaml"))
			mkdirMode(t, open, 0o777)
			link := symlink(t, open, filepath.Join(etc, "policy.d"))
			return filepath.Join(etc, "policy.yaml"), dirRefusal(open, "0777", link)
		}},
		{"policy.d a link to an empty world-writable directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			open := mkdirMode(t, filepath.Join(base, "shared"), 0o777)
			link := symlink(t, open, filepath.Join(etc, "policy.d"))
			return filepath.Join(etc, "policy.yaml"), dirRefusal(open, "0777", link)
		}},
		{"policy.d a link to a world-writable sticky directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			open := mkdirMode(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			link := symlink(t, open, filepath.Join(etc, "policy.d"))
			return filepath.Join(etc, "policy.yaml"), stickyRefusal(open, link)
		}},
		{"a drop-in linked into a writable directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			open := filepath.Join(base, "upper")
			write(t, filepath.Join(open, "all.yaml"), "allow:\n  - image: \"**\"\n")
			mkdirMode(t, open, 0o777)
			link := symlink(t, filepath.Join(open, "all.yaml"), filepath.Join(etc, "policy.d", "10-all.yaml"))
			return filepath.Join(etc, "policy.yaml"), dirRefusal(open, "0777", link)
		}},
		{"a drop-in linked to a safe file loads", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			write(t, filepath.Join(base, "teams", "a.yaml"), "allow:\n  - image: a/b\n")
			symlink(t, filepath.Join(base, "teams", "a.yaml"), filepath.Join(etc, "policy.d", "10-a.yaml"))
			return filepath.Join(etc, "policy.yaml"), ""
		}},
		{"policy.d a link owned by another user", true, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			write(t, filepath.Join(base, "d", "10-a.yaml"), "allow:\n  - image: a/b\n")
			link := symlink(t, filepath.Join(base, "d"), filepath.Join(etc, "policy.d"))
			if err := os.Lchown(link, other, other); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(etc, "policy.yaml"), link + ": symbolic link is owned by uid 65534, neither root nor the running user " +
				"(uid 0), who can point it anywhere: remove it, or recreate it as root with ln -sfn TARGET LINK " + overrideHint
		}},
		{"policy in a root-owned sticky directory", false, func(t *testing.T, base string) (string, string) {
			tmp := mkdirMode(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			write(t, filepath.Join(tmp, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(tmp, "policy.yaml"), stickyRefusal(tmp, "")
		}},
		{"policy in a private directory under a sticky one loads", false, func(t *testing.T, base string) (string, string) {
			tmp := mkdirMode(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			d := mkdirMode(t, filepath.Join(tmp, "pg"), 0o700)
			write(t, filepath.Join(d, "policy.yaml"), "mode: enforce\n")
			return filepath.Join(d, "policy.yaml"), ""
		}},
		{"a key linked into a writable directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			open := filepath.Join(base, "keys")
			write(t, filepath.Join(open, "team.pub"), string(key))
			mkdirMode(t, open, 0o777)
			link := symlink(t, filepath.Join(open, "team.pub"), filepath.Join(etc, "team.pub"))
			pol := filepath.Join(etc, "policy.yaml")
			write(t, pol, "allow:\n  - image: a/b\n    signed-by: [{key: team.pub}]\n")
			return pol, pol + ":3:23: signed-by: key " + link + ": " + dirRefusal(open, "0777", link)
		}},
		{"a chain of links through a writable directory", false, func(t *testing.T, base string) (string, string) {
			// policy.yaml -> hop1/p -> hop2/p -> real/policy.yaml; only hop2 is open.
			write(t, filepath.Join(base, "real", "policy.yaml"), "mode: enforce\n")
			hop2 := symlink(t, filepath.Join(base, "real", "policy.yaml"), filepath.Join(base, "hop2", "p"))
			mkdirMode(t, filepath.Join(base, "hop2"), 0o777)
			hop1 := symlink(t, hop2, filepath.Join(base, "hop1", "p"))
			main := symlink(t, hop1, filepath.Join(base, "etc", "policy.yaml"))
			return main, dirRefusal(filepath.Join(base, "hop2"), "0777", hop1)
		}},
		{"a chain of safe links loads", false, func(t *testing.T, base string) (string, string) {
			write(t, filepath.Join(base, "real", "policy.yaml"), "mode: enforce\n")
			hop := symlink(t, "../real/policy.yaml", filepath.Join(base, "hop", "p"))
			return symlink(t, hop, filepath.Join(base, "etc", "policy.yaml")), ""
		}},
		{"a link with a trailing slash to a directory in a sticky one", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			tmp := mkdirMode(t, filepath.Join(base, "tmp"), 0o777|os.ModeSticky)
			mkdirMode(t, filepath.Join(tmp, "d"), 0o755)
			link := symlink(t, filepath.Join(tmp, "d")+"/./", filepath.Join(etc, "policy.d"))
			return filepath.Join(etc, "policy.yaml"), stickyRefusal(tmp, link)
		}},
		{"a relative link up into a writable directory", false, func(t *testing.T, base string) (string, string) {
			etc := filepath.Join(base, "etc", "pullguard")
			write(t, filepath.Join(etc, "policy.yaml"), "mode: enforce\n")
			open := mkdirMode(t, filepath.Join(base, "var", "drop"), 0o777)
			link := symlink(t, "../../var/drop", filepath.Join(etc, "policy.d"))
			return filepath.Join(etc, "policy.yaml"), dirRefusal(open, "0777", link)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && os.Geteuid() != 0 {
				t.Skip("needs root to give a link to another user")
			}
			main, want := tc.setup(t, t.TempDir())
			requireRefusal(t, main, want)
		})
	}
}

// TestLoadStickyDirectory: a sticky directory like /tmp is safe on the way
// to a policy, never as the directory that holds it: anyone may create the
// policy.d it lacks, and decide what that is.
func TestLoadStickyDirectory(t *testing.T) {
	d := mkdirMode(t, filepath.Join(t.TempDir(), "tmp"), 0o777|os.ModeSticky)
	f := filepath.Join(d, "policy.yaml")
	write(t, f, "mode: enforce\n")
	requireRefusal(t, f, stickyRefusal(d, ""))
	if os.Geteuid() != 0 {
		return
	}
	// The same directory owned by someone else is theirs to rearrange.
	if err := os.Chown(d, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Load(f, LoadOptions{})
	if want := d + ": policy directory is owned by uid 65534, neither root nor the running user (uid 0)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want %s...", err, want)
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
// each file root's with mode 0644, and kubelet mounts it read-only: that
// passes. The same layout on a read-write mount is refused, the volume as a
// sticky directory anyone could add a policy.d to, and a timestamped
// directory others can write, link or not.
func TestLoadConfigMapLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a file system needs root")
	}
	vol := filepath.Join(t.TempDir(), "pullguard")
	mkdirMode(t, vol, 0o755)
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "mode=1777"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(vol, unix.MNT_DETACH) })
	ts := filepath.Join(vol, "..2026_11_30_12_00_00.000000001")
	write(t, filepath.Join(ts, "policy.yaml"), "mode: enforce\nallow:\n  - image: a/b\n")
	data := symlink(t, filepath.Base(ts), filepath.Join(vol, "..data"))
	main := symlink(t, "..data/policy.yaml", filepath.Join(vol, "policy.yaml"))

	requireRefusal(t, main, stickyRefusal(vol, ""))
	mkdirMode(t, vol, 0o755)
	mkdirMode(t, ts, 0o777)
	requireRefusal(t, main, dirRefusal(ts, "0777", data))

	mkdirMode(t, vol, 0o777|os.ModeSticky)
	mkdirMode(t, ts, 0o755)
	if err := unix.Mount("", vol, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	requireRefusal(t, main, "")
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

// TestPermissionWalkStopsOnLinkLoop: a loop of links made between opening a
// file and checking its path ends the check, as the kernel's ELOOP does,
// rather than the load.
func TestPermissionWalkStopsOnLinkLoop(t *testing.T) {
	dir := t.TempDir()
	a := symlink(t, "b", filepath.Join(dir, "a"))
	symlink(t, "a", filepath.Join(dir, "b"))
	p := newPermissionChecker().dir(a)
	if want := a + ": more than 40 symbolic links to follow"; p == nil || p.String() != want {
		t.Fatalf("problem = %v, want %s", p, want)
	}
}
