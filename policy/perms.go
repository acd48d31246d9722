package policy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who may change the policy. Whoever can write a policy file decides what
// the host runs, and so does whoever can write a directory on its path: they
// can rename a file away (the policy silently loses its rules), swap in
// another or point a symbolic link elsewhere. Like sshd's StrictModes, a
// policy is refused when its file, policy.d/ or any directory above them is
// writable by group or others or owned by a user other than root or the one
// pullguard runs as. A sticky directory owned by root (/tmp) is the one
// exception: there, no one else can rename or replace a file they do not
// own, so the file's own check is enough. The other is a file or directory
// on a read-only mount, such as a Kubernetes ConfigMap volume (its root is
// mode 0777, but kubelet mounts it read-only): through that mount no one can
// write it, whatever its mode says. Owners are checked all the same.

const overrideHint = "(--insecure-policy-permissions overrides, for development only)"

// permissionChecker checks each directory once per load.
type permissionChecker struct {
	euid    uint32
	checked map[string]*Problem
}

func newPermissionChecker() *permissionChecker {
	return &permissionChecker{euid: uint32(os.Geteuid()), checked: map[string]*Problem{}}
}

// file checks an open policy file and every directory above it, along the
// path as given and along the path with symbolic links resolved.
func (c *permissionChecker) file(name string, st fs.FileInfo) *Problem {
	if msg := c.ownerAndMode(name, st, "policy file", false); msg != "" {
		return &Problem{Pos: Position{File: name}, Msg: msg}
	}
	return c.dirsAbove(name)
}

// dir checks a directory the policy is read from (policy.d/) and every
// directory above it. A missing directory passes: there is nothing in it.
func (c *permissionChecker) dir(name string) *Problem {
	if p := c.oneDir(name); p != nil {
		return p
	}
	return c.dirsAbove(name)
}

func (c *permissionChecker) dirsAbove(name string) *Problem {
	paths := []string{name}
	if real, err := filepath.EvalSymlinks(name); err == nil && real != name {
		paths = append(paths, real)
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return &Problem{Pos: Position{File: name}, Msg: fmt.Sprintf("cannot tell which directories hold the policy: %v", err)}
		}
		for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
			if prob := c.oneDir(d); prob != nil {
				return prob
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}

func (c *permissionChecker) oneDir(d string) *Problem {
	if p, ok := c.checked[d]; ok {
		return p
	}
	var prob *Problem
	// Lstat: a symbolic link's own mode means nothing, and the directory
	// it points to is checked along the resolved path.
	st, err := os.Lstat(d)
	switch {
	case err != nil && os.IsNotExist(err):
	case err != nil:
		prob = &Problem{Pos: Position{File: d}, Msg: fmt.Sprintf("cannot check the policy directory: %v", err)}
	case st.Mode()&fs.ModeSymlink != 0:
	default:
		if msg := c.ownerAndMode(d, st, "policy directory", true); msg != "" {
			prob = &Problem{Pos: Position{File: d}, Msg: msg}
		}
	}
	c.checked[d] = prob
	return prob
}

// ownerAndMode says what is wrong with a file's or directory's owner and
// mode, or "" when nothing is.
func (c *permissionChecker) ownerAndMode(path string, st fs.FileInfo, what string, isDir bool) string {
	uid, known := uint32(0), false
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid, known = sys.Uid, true
	}
	if known && uid != 0 && uid != c.euid {
		return fmt.Sprintf("%s is owned by uid %d, neither root nor the running user (uid %d) %s", what, uid, c.euid, overrideHint)
	}
	perm := st.Mode().Perm()
	if perm&0o022 == 0 {
		return ""
	}
	if isDir && st.Mode()&fs.ModeSticky != 0 && known && uid == 0 {
		return "" // /tmp: others cannot rename or replace what they do not own
	}
	if onReadOnlyMount(path) {
		return ""
	}
	if isDir {
		return fmt.Sprintf("%s is writable by group or others (mode %04o), so they decide which policy files it holds: run chmod go-w on it %s", what, perm, overrideHint)
	}
	return fmt.Sprintf("%s is writable by group or others (mode %04o): run chmod go-w on it %s", what, perm, overrideHint)
}

// onReadOnlyMount reports whether path lies on a file system mounted
// read-only, where no one can write it through this mount.
func onReadOnlyMount(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Flags&unix.ST_RDONLY != 0
}
