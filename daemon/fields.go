package daemon

// Journal field names pullguard writes. They are used as logrus field keys
// as they are, so the JSON written to stderr and the journal entries carry
// the same names and one filter works on both.
const (
	// FieldMessageID is journald's MESSAGE_ID: one of the MessageID*
	// constants, the kind of entry.
	FieldMessageID = "MESSAGE_ID"

	FieldAction      = "PULLGUARD_ACTION"       // an enforcer.Action: removed, untagged, would-remove, ...
	FieldImage       = "PULLGUARD_IMAGE"        // normalized reference, or the input when it did not parse
	FieldImageID     = "PULLGUARD_IMAGE_ID"     // the runtime's image ID (sha256:...)
	FieldContainerID = "PULLGUARD_CONTAINER_ID" // the container acted on
	FieldPlugin      = "PULLGUARD_PLUGIN"       // the Docker plugin acted on: where it was pulled from
	FieldRuntime     = "PULLGUARD_RUNTIME"      // docker or containerd
	FieldNamespace   = "PULLGUARD_NAMESPACE"    // containerd namespace
	FieldEvent       = "PULLGUARD_EVENT"        // what triggered the decision: pull, tag, create, reconcile, authz
	FieldHook        = "PULLGUARD_HOOK"         // the hook that asked before the fact: authz, nri
	FieldRule        = "PULLGUARD_RULE"         // file:line of the deciding rule
	FieldReason      = "PULLGUARD_REASON"       // why the reference is not allowed
	FieldMode        = "PULLGUARD_MODE"         // audit or enforce
	FieldResembles   = "PULLGUARD_RESEMBLES"    // the allowed repository a denied one looks like (typosquat)
	FieldError       = "PULLGUARD_ERROR"        // why an action failed
	// FieldSignature is set where a signed-by rule decided: the evidence
	// it was judged on, verified:<key fingerprint>, missing, invalid or
	// unverifiable (policy.SignatureResult.Field).
	FieldSignature = "PULLGUARD_SIGNATURE"
	// FieldAttestation is set where an attestations rule decided: verified:<type>
	// for each type, or <status>:<type> of the first that did not pass
	// (missing, invalid, failed, unverifiable; policy.AttestationCheck.Field).
	FieldAttestation = "PULLGUARD_ATTESTATION"
	// FieldRepeats is how many identical entries were suppressed by flood
	// control since the previous one was written.
	FieldRepeats = "PULLGUARD_REPEATS"
	// FieldDropped is how many entries were lost because the log could not
	// keep up.
	FieldDropped = "PULLGUARD_DROPPED"

	FieldPolicyHash  = "PULLGUARD_POLICY_HASH"  // content hash of the policy in force
	FieldPolicyPath  = "PULLGUARD_POLICY_PATH"  // the main policy file
	FieldPolicyFiles = "PULLGUARD_POLICY_FILES" // every file read, comma-separated, in reading order
	FieldDefault     = "PULLGUARD_DEFAULT"      // the policy's default: deny or allow
	FieldRunning     = "PULLGUARD_RUNNING"      // the policy's running: keep or stop
	FieldAllowRules  = "PULLGUARD_ALLOW_RULES"  // number of allow rules
	FieldDenyRules   = "PULLGUARD_DENY_RULES"   // number of deny rules
	FieldTrigger     = "PULLGUARD_TRIGGER"      // what started a policy reload: file change, SIGHUP, ...

	// The policy's origin when it comes from a signed artifact
	// (--policy-source), on policy entries.
	FieldPolicySource  = "PULLGUARD_POLICY_SOURCE"  // oci://REGISTRY/REPO:TAG
	FieldPolicyDigest  = "PULLGUARD_POLICY_DIGEST"  // the artifact in force: its manifest digest
	FieldPolicyFetched = "PULLGUARD_POLICY_FETCHED" // when it was fetched and verified (RFC 3339)
	FieldRefusedDigest = "PULLGUARD_REFUSED_DIGEST" // an artifact that was refused
)
