package policysource

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The state directory (--state-dir) is root's alone (0700): the policy
// under it decides what runs. Its layout:
//
//	policy/sha256:<hex>/           one verified artifact's files
//	policy/sha256:<hex>/.manifest.json   its manifest, to check the files at start
//	policy/current.json            the artifact in force: source, digest, key, fetch time
//
// An artifact is unpacked into a temporary directory and renamed into
// place, and current.json is replaced by rename, so a crash leaves the
// previous state whole.
type store struct {
	dir string // <state-dir>/policy
}

const (
	manifestName = ".manifest.json"
	recordName   = "current.json"
)

// record is current.json: the last artifact that was verified and loaded.
type record struct {
	Source  string    `json:"source"`
	Digest  string    `json:"digest"`
	Key     string    `json:"key"` // fingerprint of the key that verified it
	Fetched time.Time `json:"fetched"`
}

// newStore makes the state directory (0700) and its policy/ below it.
// An existing state directory must be a directory that only its owner
// can reach, owned by the daemon's user: whoever else could write it
// would choose the policy.
func newStore(stateDir string) (*store, error) {
	for _, d := range []string{stateDir, filepath.Join(stateDir, "policy")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		st, err := os.Lstat(d)
		if err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("state directory %s is not a directory (a link is refused)", d)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("state directory %s has mode %04o; it must be reachable by its owner only (chmod 700)", d, st.Mode().Perm())
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
			return nil, fmt.Errorf("state directory %s is owned by uid %d, not by pullguard's (uid %d)", d, sys.Uid, os.Geteuid())
		}
	}
	return &store{dir: filepath.Join(stateDir, "policy")}, nil
}

// path is an artifact's directory.
func (s *store) path(digest string) string { return filepath.Join(s.dir, digest) }

// mainFile is an artifact's policy.yaml.
func (s *store) mainFile(digest string) string { return filepath.Join(s.path(digest), MainFile) }

// unpack writes an artifact's files under policy/<digest>/, replacing
// whatever an earlier, interrupted attempt left there.
func (s *store) unpack(digest string, manifest []byte, files []file) error {
	tmp, err := os.MkdirTemp(s.dir, ".unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	write := func(rel string, data []byte) error {
		p := filepath.Join(tmp, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		// O_EXCL: the directory is new and the names were checked, so
		// nothing can be there; if something is, it is not followed.
		return writeFile(p, data, os.O_EXCL)
	}
	for _, f := range files {
		if err := write(f.path, f.data); err != nil {
			return err
		}
	}
	if err := write(manifestName, manifest); err != nil {
		return err
	}
	final := s.path(digest)
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// check confirms that policy/<digest>/ holds exactly the artifact's files,
// unchanged: the manifest matches the digest, each file its layer.
func (s *store) check(digest string) error {
	dir := s.path(digest)
	raw, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return err
	}
	m, err := parseManifest(raw, digest)
	if err != nil {
		return err
	}
	want := map[string]bool{manifestName: true}
	for _, l := range m.Layers {
		rel := l.Annotations[titleAnnotation]
		want[rel] = true
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		_, err = readBlob(f, l)
		f.Close()
		if err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !want[filepath.ToSlash(rel)] || !d.Type().IsRegular() {
			return fmt.Errorf("%s is not part of the artifact", p)
		}
		return nil
	})
}

// readRecord returns current.json; no file is (nil, nil).
func (s *store) readRecord() (*record, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, recordName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(s.dir, recordName), err)
	}
	return &r, nil
}

// writeRecord replaces current.json atomically.
func (s *store) writeRecord(r record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(s.dir, ".record-"+hex.EncodeToString(rnd[:]))
	if err := writeFile(tmp, append(data, '\n'), os.O_EXCL); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, recordName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.dir)
}

// prune removes every artifact directory but keep's, and what interrupted
// unpacks left.
func (s *store) prune(keep ...string) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	kept := map[string]bool{recordName: true}
	for _, k := range keep {
		kept[k] = true
	}
	var errs []error
	for _, e := range entries {
		if kept[e.Name()] || !(strings.HasPrefix(e.Name(), "sha256:") || strings.HasPrefix(e.Name(), ".")) {
			continue
		}
		errs = append(errs, os.RemoveAll(filepath.Join(s.dir, e.Name())))
	}
	return errors.Join(errs...)
}

// writeFile writes data to a new file (mode 0600) and syncs it.
func writeFile(p string, data []byte, flag int) error {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
