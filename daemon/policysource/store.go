package policysource

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pullguard/pullguard/internal/statedir"
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
	dir := filepath.Join(stateDir, "policy")
	if err := statedir.Prepare(stateDir, dir); err != nil {
		return nil, err
	}
	return &store{dir: dir}, nil
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
		return statedir.WriteFile(p, data, os.O_EXCL)
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
	return statedir.SyncDir(s.dir)
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
	return statedir.Replace(filepath.Join(s.dir, recordName), append(data, '\n'))
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
