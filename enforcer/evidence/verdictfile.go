package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/internal/statedir"
	"github.com/pullguard/pullguard/policy"
)

// VerdictFileName is the verdict file's name in the state directory.
const VerdictFileName = "verdicts"

// verdictFormat is the file's format version; a file of another version
// is discarded, not converted.
const verdictFormat = 1

// maxVerdictFileSize bounds what is read: maxVerdicts verdicts of a few
// dozen names each fit many times over.
const maxVerdictFileSize = 64 << 20

// VerdictFile keeps a judge's verdicts reached on verified evidence in the
// state directory, so that a restart does not ask registries again about
// images already judged under the same policy. It holds, for each verdict,
// the question (the policy's hash, the digest, the names) and the verified
// answers it rests on, not the verdict itself: after a restart the policy
// core judges again on those answers alone (replay.go), asking nobody, and
// a verdict it does not reach again is judged afresh.
//
// The file is root's (mode 0600, in the 0700 state directory) and replaced
// atomically. One that is damaged, of another format, or that pullguard's
// user does not own or others may write, is discarded with a warning and
// never read: whoever could write it would decide what is not asked again.
type VerdictFile struct {
	path string
	log  logrus.FieldLogger

	mu    sync.Mutex // one load or save at a time
	c     *verdictCache
	saved uint64 // c.changes when last written
	off   bool   // the state directory is unusable: nothing is kept
}

// NewVerdictFile returns the verdict file in stateDir. Nothing is read or
// written until the judge is attached and Load is called.
func NewVerdictFile(stateDir string, log logrus.FieldLogger) *VerdictFile {
	return &VerdictFile{path: filepath.Join(stateDir, VerdictFileName), log: log}
}

// KeepVerdicts attaches f to the judge: f loads into and saves from its
// verdict cache.
func (j *Judge) KeepVerdicts(f *VerdictFile) {
	if j == nil || f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c = &j.verdicts
}

// Path is the file's path.
func (f *VerdictFile) Path() string { return f.path }

// fileV1 is the file: its format, the verdicts as written and their
// SHA-256, which is checked before they are read.
type fileV1 struct {
	Format   int             `json:"format"`
	Written  time.Time       `json:"written"`
	SHA256   string          `json:"sha256"`
	Verdicts json.RawMessage `json:"verdicts"`
}

// keptVerdict is one verdict in the file.
type keptVerdict struct {
	Policy                 string    `json:"policy"`
	Digest                 string    `json:"digest"`
	Names                  []string  `json:"names"`
	DigestNamesProveOrigin bool      `json:"digestNamesProveOrigin,omitempty"`
	Pulling                bool      `json:"pulling,omitempty"`
	Outcome                string    `json:"outcome"`
	Until                  time.Time `json:"until"`
	Evidence               verified  `json:"evidence"`
}

// Load reads the verdicts kept under policyHash (the policy in force) that
// have not expired; the others are of no use and are dropped. It makes the
// state directory when missing. Whatever goes wrong is logged: the daemon
// then judges afresh, as it would without the file.
func (f *VerdictFile) Load(policyHash string) { f.load(policyHash, time.Now()) }

func (f *VerdictFile) load(policyHash string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c == nil {
		return
	}
	if err := statedir.Prepare(filepath.Dir(f.path)); err != nil {
		f.off = true
		f.log.WithError(err).Warnf("verdicts are not kept across restarts: %v; after a restart, registries are asked again about every image", err)
		return
	}
	kept, err := readVerdictFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		f.discard(err)
		return
	}
	restored := map[verdictKey]cachedVerdict{}
	dropped := 0
	for _, k := range kept {
		outcome := map[string]policy.Outcome{"allowed": policy.Allowed, "denied": policy.Denied}[k.Outcome]
		if k.Policy != policyHash || !now.Before(k.Until) || k.Digest == "" || outcome == policy.Undecided || len(restored) >= maxVerdicts {
			dropped++
			continue
		}
		ev := k.Evidence
		restored[verdictKey{k.Policy, k.Digest}] = cachedVerdict{
			img:      policy.Image{Names: k.Names, Digest: k.Digest, DigestNamesProveOrigin: k.DigestNamesProveOrigin, Pulling: k.Pulling},
			verdict:  policy.Verdict{Outcome: outcome},
			until:    k.Until,
			evidence: &ev,
		}
	}
	f.c.mu.Lock()
	f.c.restored = restored
	f.saved = f.c.changes
	f.c.mu.Unlock()
	f.log.Infof("kept verdicts: %d read from %s for the policy in force; %d expired or of another policy dropped",
		len(restored), f.path, dropped)
}

// discard removes a file that is not to be trusted, and says why.
func (f *VerdictFile) discard(why error) {
	removed := "removed"
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		removed = fmt.Sprintf("could not be removed (%v)", err)
	}
	f.log.WithError(why).Warnf("kept verdicts discarded, not trusted: %v; the file was %s, and images are judged afresh (registries are asked again)", why, removed)
}

// readVerdictFile opens path without following a link, checks who owns
// it and who may write it, then its format and checksum.
func readVerdictFile(path string) ([]keptVerdict, error) {
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link", path)
	}
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if uid, ok := statedir.Owner(st); ok && uid != os.Geteuid() {
		return nil, fmt.Errorf("%s is owned by uid %d, not by pullguard's (uid %d)", path, uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by group or others (mode %04o)", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(fd, maxVerdictFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxVerdictFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxVerdictFileSize)
	}
	return parseVerdictFile(data)
}

func parseVerdictFile(data []byte) ([]keptVerdict, error) {
	var file fileV1
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("damaged: %w", err)
	}
	if file.Format != verdictFormat {
		return nil, fmt.Errorf("format version %d, this pullguard reads %d", file.Format, verdictFormat)
	}
	if sum := sha256.Sum256(file.Verdicts); hex.EncodeToString(sum[:]) != file.SHA256 {
		return nil, errors.New("damaged: its checksum does not match its content")
	}
	var kept []keptVerdict
	dec := json.NewDecoder(bytes.NewReader(file.Verdicts))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kept); err != nil {
		return nil, fmt.Errorf("damaged: %w", err)
	}
	return kept, nil
}

// Save writes the verdicts kept under policyHash that have not expired,
// when any was reached since the last load or save. The daemon calls it
// on a schedule and when it stops, not on every verdict.
func (f *VerdictFile) Save(policyHash string) error { return f.save(policyHash, time.Now()) }

func (f *VerdictFile) save(policyHash string, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.c == nil || f.off {
		return nil
	}
	c := f.c
	c.mu.Lock()
	if c.changes == f.saved {
		c.mu.Unlock()
		return nil
	}
	changes := c.changes
	var kept []keptVerdict
	for _, m := range []map[verdictKey]cachedVerdict{c.entries, c.restored} {
		for k, e := range m {
			if k.policyHash != policyHash || !now.Before(e.until) || e.evidence == nil {
				continue
			}
			kept = append(kept, keptVerdict{
				Policy: k.policyHash, Digest: k.digest, Names: e.img.Names,
				DigestNamesProveOrigin: e.img.DigestNamesProveOrigin, Pulling: e.img.Pulling,
				Outcome: e.verdict.Outcome.String(), Until: e.until.UTC(), Evidence: *e.evidence,
			})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(kept, func(a, b keptVerdict) int { return strings.Compare(a.Digest, b.Digest) })
	if len(kept) > maxVerdicts {
		kept = kept[:maxVerdicts]
	}
	data, err := marshalVerdictFile(kept, now)
	if err != nil {
		return err
	}
	if err := statedir.Replace(f.path, data); err != nil {
		return fmt.Errorf("keeping verdicts in %s: %w", f.path, err)
	}
	f.saved = changes
	return nil
}

func marshalVerdictFile(kept []keptVerdict, now time.Time) ([]byte, error) {
	if kept == nil {
		kept = []keptVerdict{}
	}
	raw, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	data, err := json.Marshal(fileV1{Format: verdictFormat, Written: now.UTC(), SHA256: hex.EncodeToString(sum[:]), Verdicts: raw})
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
