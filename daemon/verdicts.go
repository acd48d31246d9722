package daemon

import (
	"time"

	"github.com/sirupsen/logrus"
)

// VerdictStore keeps the verdicts reached on verified evidence across
// restarts (enforcer/evidence.VerdictFile), so that a restart does not ask
// registries again about images already judged under the same policy.
type VerdictStore interface {
	// Load reads the verdicts kept under the policy in force; it logs
	// whatever it cannot use.
	Load(policyHash string)
	// Save writes them when any was reached since the last Load or Save.
	Save(policyHash string) error
}

// VerdictSaveInterval is how often reached verdicts are written: a crash
// loses at most this much of them, and a host holding thousands of images
// writes its file once after a reconcile rather than once an image.
const VerdictSaveInterval = time.Minute

// verdictKeeper writes a VerdictStore on the daemon's schedule: after the
// first reconciles, every VerdictSaveInterval, and when the daemon stops,
// always from Run's goroutine.
type verdictKeeper struct {
	store  VerdictStore
	policy func() string
	log    *logrus.Logger
	failed string // the last failure logged
}

func (k *verdictKeeper) load() {
	if k.store != nil {
		k.store.Load(k.policy())
	}
}

func (k *verdictKeeper) save() {
	if k.store == nil {
		return
	}
	err := k.store.Save(k.policy())
	switch {
	case err == nil:
		k.failed = ""
	case err.Error() != k.failed:
		k.failed = err.Error()
		k.log.WithError(err).Warn("cannot keep verdicts for the next start; after a restart, registries are asked again about every image")
	}
}
