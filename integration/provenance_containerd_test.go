package integration

// End-to-end tests of content provenance on containerd (issue 12): a record does not say how it
// arrived, so pullguard asks the registry whether the repository serves the record's target
// (HEAD of the manifest by digest); no record's name counts, CRI's repo@sha256: records
// included (any socket user can write one). A registry that cannot be reached proves nothing:
// the record stays, reported failed, until a reconcile gets a definite answer.

import (
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestProvenanceContainerd(t *testing.T) {
	for _, local := range []string{"deny", "allow"} {
		t.Run(local, func(t *testing.T) {
			e := RequireEnv(t)
			const ns = "default"
			approved, evilTag := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")
			imported, late := e.Ref("approved/imported:1"), e.Ref("approved/late:1")
			// Tarballs of evil content under approved names, made with Docker before pullguard runs.
			e.Docker(t, "pull", "-q", evilTag)
			importTar, lateTar := saveAs(t, e, evilTag, imported), saveAs(t, e, evilTag, late)
			e.Reset(t)

			// A short resync: a record whose provenance the registry could not answer is
			// judged again at the next one.
			d := startContainerdGuard(t, e, WritePolicy(t, "", provenancePolicy(e, local)), "--resync-interval", "2s")

			// Allowed flows: a pull, a re-tag of it to another allowed name, CRI's three records.
			ctrPull(t, e, ns, approved)
			other := e.Ref("approved/other:2")
			e.Ctr(t, ns, "images", "tag", approved, other)
			cri := pullCRIStyle(t, e, "k8s.io", e.Ref("approved/busybox:1.1"))

			// ctr import: evil content under an approved name.
			_, err := e.CtrErr(t, ns, "images", "import", "--all-platforms", importTar)
			if err != nil && local == "allow" {
				t.Fatal(err)
			}
			// Under deny pullguard may delete the record while ctr still unpacks it: then ctr
			// fails ("content digest ... not found"). Either way the record must go.
			t.Logf("ctr import of %s: %v", imported, err)
			if local == "deny" {
				waitCtrImageGone(t, e, ns, imported)
				entry := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+imported, "MESSAGE_ID="+msgActionTaken)
				if !strings.Contains(entry["PULLGUARD_REASON"], reasonLocalContent) {
					t.Errorf("PULLGUARD_REASON = %q, want %q", entry["PULLGUARD_REASON"], reasonLocalContent)
				}
			} else {
				// The guard is caught up once it has removed a disallowed name made after the import.
				sentinel := e.Ref("evil/sentinel:1")
				e.Ctr(t, ns, "images", "tag", approved, sentinel)
				waitCtrImageGone(t, e, ns, sentinel)
			}

			if local == "deny" {
				// The registry stops answering: an import now is not deleted for want of an
				// answer, but reported failed; once the registry is back, a reconcile deletes it.
				pid := registryPID(t, e)
				pauseRegistry(t, e)
				e.Ctr(t, ns, "images", "import", "--all-platforms", lateTar)
				entry := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+late, "PULLGUARD_ACTION=failed")
				if entry["PULLGUARD_ERROR"] == "" {
					t.Errorf("the failed entry for %s has no PULLGUARD_ERROR", late)
				}
				if !slices.Contains(e.CtrImages(t, ns), late) {
					t.Errorf("%s was deleted while the registry could not answer", late)
				}
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				waitCtrImageGone(t, e, ns, late) // at the next resync
			}

			got := e.CtrImages(t, ns)
			for _, keep := range []string{approved, other} {
				if !slices.Contains(got, keep) {
					t.Errorf("%s was deleted; namespace %s holds %q", keep, ns, got)
				}
			}
			if local == "allow" && !slices.Contains(got, imported) {
				t.Errorf("%s was deleted under local-images: allow", imported)
			}
			requireCtrImages(t, e, "k8s.io", cri...)
		})
	}
}
