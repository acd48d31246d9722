// Package statedir prepares pullguard's state directory (--state-dir,
// default /var/lib/pullguard) and the directories below it, and writes
// files there atomically. What is kept there decides what the host runs
// (the policy a source delivered) or what is not asked again (the
// verdicts kept across a restart), so a directory someone else could
// write, or a link, is refused rather than trusted.
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Prepare makes each directory (mode 0700) that does not exist, in order,
// and checks every one: a directory, not a link, reachable by its owner
// only, owned by the user pullguard runs as.
func Prepare(dirs ...string) error {
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("state directory: %w", err)
		}
		st, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		if err := Check(d, st); err != nil {
			return err
		}
	}
	return nil
}

// Check says what is wrong with the state directory d (st from Lstat), or nil.
func Check(d string, st fs.FileInfo) error {
	if !st.IsDir() {
		return fmt.Errorf("state directory %s is not a directory (a link is refused)", d)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("state directory %s has mode %04o; it must be reachable by its owner only (chmod 700)", d, st.Mode().Perm())
	}
	if uid, ok := Owner(st); ok && uid != os.Geteuid() {
		return fmt.Errorf("state directory %s is owned by uid %d, not by pullguard's (uid %d)", d, uid, os.Geteuid())
	}
	return nil
}

// Owner is the uid that owns a file, when the system says.
func Owner(st fs.FileInfo) (int, bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid), true
	}
	return 0, false
}

// WriteFile writes data to a new file p (mode 0600, never through a link)
// and syncs it. flag adds to O_WRONLY|O_CREATE (O_EXCL: the name must be new).
func WriteFile(p string, data []byte, flag int) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|flag, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Replace puts data at p atomically: a temporary file beside it, synced,
// renamed over p, and the directory synced. A crash leaves the old file
// or the new one, never a part.
func Replace(p string, data []byte) error {
	dir := filepath.Dir(p)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(p)+"-"+hex.EncodeToString(rnd[:]))
	if err := WriteFile(tmp, data, os.O_EXCL); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a directory's entries (a rename, a new file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
