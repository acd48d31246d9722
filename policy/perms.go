package policy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who may change the policy. Whoever can write a policy file decides what
// the host runs, and so does whoever can write a directory on its path: they
// can rename a file away (the policy silently loses its rules), swap in
// another or point a symbolic link elsewhere. Like sshd's StrictModes, on
// the path as the kernel resolves it: every symbolic link on the way to a
// policy file, policy.d/, a drop-in or a key file is followed, and each link
// must be owned by root or the user pullguard runs as (whoever owns a link
// can point it anywhere); every directory passed through, and the file or
// policy.d/ at the end, must be owned by one of them and not writable by
// group or others.
//
// A sticky directory owned by root (/tmp) is accepted on the way, where no
// one else can rename or replace what they do not own. It is refused where a
// name is looked up last (the directory holding the policy, a drop-in, a
// key or a link to one) or found missing: the sticky bit stops deletion, not
// creation, and whoever creates the missing policy.d or drop-in there
// decides what it is.
//
// A file or directory on a read-only mount, such as a Kubernetes ConfigMap
// volume (its root is mode 0777, but kubelet mounts it read-only), cannot be
// written through that mount by anyone, whatever its mode says. Owners are
// checked all the same.

const overrideHint = "(--insecure-policy-permissions overrides, for development only)"

// maxLinks bounds the links followed to resolve one path, as the kernel's
// ELOOP does.
const maxLinks = 40

// permissionChecker checks each directory once per load.
type permissionChecker struct {
	euid    uint32
	checked map[dirCheck]string
}

// dirCheck is one directory and whether it must be safe even when sticky.
type dirCheck struct {
	path   string
	strict bool
}

func newPermissionChecker() *permissionChecker {
	return &permissionChecker{euid: uint32(os.Geteuid()), checked: map[dirCheck]string{}}
}

// file checks an open policy or key file (st is from its descriptor, what
// says which) and the path to it.
func (c *permissionChecker) file(name string, st fs.FileInfo, what string) *Problem {
	if msg := c.ownerAndMode(name, st, what, false, false); msg != "" {
		return &Problem{Pos: Position{File: name}, Msg: msg}
	}
	resolved, exists, _, prob := c.walk(name)
	if prob != nil {
		return prob
	}
	// The walk and the open saw the same file, or the path changed in
	// between: the next change event reloads.
	if rst, err := os.Stat(resolved); !exists || err != nil || !os.SameFile(st, rst) {
		return &Problem{Pos: Position{File: name}, Msg: what + " was replaced while its permissions were checked"}
	}
	return nil
}

// dir checks a directory the policy is read from (policy.d/) and the path to
// it. A missing directory passes when no one else could create it.
func (c *permissionChecker) dir(name string) *Problem {
	resolved, exists, via, prob := c.walk(name)
	if prob != nil || !exists {
		return prob
	}
	if msg := c.oneDir(resolved, true, "policy directory"); msg != "" {
		return refusal(resolved, msg, via)
	}
	return nil
}

// refusal is a problem with path, reached through the link via ("" if
// none): the link is named, as it is what the operator may not know about.
func refusal(path, msg, via string) *Problem {
	if before, ok := strings.CutSuffix(msg, " "+overrideHint); ok && via != "" {
		msg = before + ", reached through the link " + via + " " + overrideHint
	} else if via != "" {
		msg += ", reached through the link " + via
	}
	return &Problem{Pos: Position{File: path}, Msg: msg}
}

// walk resolves name one component at a time, as the kernel does, checking
// each directory it passes through and the owner of each link it follows.
// It returns the resolved path, whether it exists and the last link
// followed ("" if none).
func (c *permissionChecker) walk(name string) (resolved string, exists bool, via string, prob *Problem) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", false, "", &Problem{Pos: Position{File: name}, Msg: fmt.Sprintf("cannot tell which directories hold the policy: %v", err)}
	}
	refuse := func(path, msg string) (string, bool, string, *Problem) {
		return "", false, via, refusal(path, msg, via)
	}
	dir := "/"
	if msg := c.oneDir(dir, false, "policy directory"); msg != "" {
		return refuse(dir, msg)
	}
	todo := components(abs)
	links := 0
	for len(todo) > 0 {
		part := todo[0]
		todo = todo[1:]
		if part == ".." {
			dir = filepath.Dir(dir) // dir has no links left: its parent is already checked
			continue
		}
		last := len(todo) == 0
		next := filepath.Join(dir, part)
		st, err := os.Lstat(next)
		if err != nil && !os.IsNotExist(err) {
			return refuse(next, fmt.Sprintf("cannot check the policy's path: %v", err))
		}
		// Where a name is looked up last or found missing, whoever may add
		// an entry decides what the name is.
		if last || err != nil {
			if msg := c.oneDir(dir, true, "policy directory"); msg != "" {
				return refuse(dir, msg)
			}
		}
		switch {
		case err != nil:
			return filepath.Join(append([]string{next}, todo...)...), false, via, nil
		case st.Mode()&fs.ModeSymlink != 0:
			if msg := c.linkOwner(st); msg != "" {
				return refuse(next, msg)
			}
			if links++; links > maxLinks {
				return "", false, via, &Problem{Pos: Position{File: name}, Msg: fmt.Sprintf("more than %d symbolic links to follow", maxLinks)}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return refuse(next, fmt.Sprintf("cannot read the symbolic link: %v", err))
			}
			if filepath.IsAbs(target) {
				dir = "/"
			}
			todo = append(components(target), todo...)
			via = next
		case last:
			return next, true, via, nil
		case !st.IsDir():
			// Opening the file fails and says so.
			return filepath.Join(append([]string{next}, todo...)...), false, via, nil
		default:
			if msg := c.oneDir(next, false, "policy directory"); msg != "" {
				return refuse(next, msg)
			}
			dir = next
		}
	}
	return dir, true, via, nil
}

// components splits a path into the names to look up: "a//b/./c/" is a,
// b, c, so that the last one is known.
func components(p string) []string {
	return slices.DeleteFunc(strings.Split(p, "/"), func(s string) bool { return s == "" || s == "." })
}

// oneDir says what is wrong with directory d, or "" when nothing is. A
// strict check refuses a sticky directory others can write.
func (c *permissionChecker) oneDir(d string, strict bool, what string) string {
	key := dirCheck{d, strict}
	if msg, ok := c.checked[key]; ok {
		return msg
	}
	var msg string
	if st, err := os.Stat(d); err != nil {
		msg = fmt.Sprintf("cannot check the %s: %v", what, err)
	} else {
		msg = c.ownerAndMode(d, st, what, true, strict)
	}
	c.checked[key] = msg
	return msg
}

// linkOwner says what is wrong with a symbolic link's owner, or "" when
// nothing is. A link's mode means nothing: only its owner may change it,
// and root.
func (c *permissionChecker) linkOwner(st fs.FileInfo) string {
	if uid, ok := owner(st); ok && uid != 0 && uid != c.euid {
		return fmt.Sprintf("symbolic link is owned by uid %d, neither root nor the running user (uid %d), who can point it anywhere: "+
			"remove it, or recreate it as root with ln -sfn TARGET LINK %s", uid, c.euid, overrideHint)
	}
	return ""
}

func owner(st fs.FileInfo) (uint32, bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid, true
	}
	return 0, false
}

// ownerAndMode says what is wrong with a file's or directory's owner and
// mode, or "" when nothing is.
func (c *permissionChecker) ownerAndMode(path string, st fs.FileInfo, what string, isDir, strict bool) string {
	uid, known := owner(st)
	if known && uid != 0 && uid != c.euid {
		return fmt.Sprintf("%s is owned by uid %d, neither root nor the running user (uid %d) %s", what, uid, c.euid, overrideHint)
	}
	perm := st.Mode().Perm()
	if perm&0o022 == 0 {
		return ""
	}
	sticky := isDir && st.Mode()&fs.ModeSticky != 0
	if sticky && known && uid == 0 && !strict {
		return "" // /tmp on the way: others cannot rename or replace what they do not own
	}
	if onReadOnlyMount(path) {
		return ""
	}
	mode := uint32(perm)
	if sticky {
		mode |= unix.S_ISVTX
		return fmt.Sprintf("%s is writable by group or others (mode %04o); the sticky bit stops them removing files here, not creating "+
			"a missing policy.d, drop-in or link: run chmod go-w on it, or keep the policy where only root can write (such as "+
			"/etc/pullguard) %s", what, mode, overrideHint)
	}
	if isDir {
		return fmt.Sprintf("%s is writable by group or others (mode %04o), so they decide which policy files it holds: run chmod go-w on it %s", what, mode, overrideHint)
	}
	return fmt.Sprintf("%s is writable by group or others (mode %04o): run chmod go-w on it %s", what, mode, overrideHint)
}

// onReadOnlyMount reports whether path lies on a file system mounted
// read-only, where no one can write it through this mount.
func onReadOnlyMount(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Flags&unix.ST_RDONLY != 0
}
