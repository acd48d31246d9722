package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/policy"
)

var update = flag.Bool("update", false, "rewrite kubernetes/pullguard.yaml from the chart (make manifests)")

const (
	chartDir      = "helm/pullguard"
	manifestPath  = "kubernetes/pullguard.yaml"
	namespacePath = "kubernetes/namespace.yaml"
	releaseName   = "pullguard"
	namespace     = "pullguard-system"
)

// objects are the decoded documents of a manifest, by kind.
type objects struct {
	namespaces []corev1.Namespace
	configMaps []corev1.ConfigMap
	daemonSets []appsv1.DaemonSet
}

// decodeStrict decodes every document of a multi-document YAML stream into
// its Kubernetes type; unknown fields, duplicate fields and unknown kinds
// are errors.
func decodeStrict(data []byte) (objects, error) {
	var objs objects
	for i, doc := range splitDocuments(data) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return objs, fmt.Errorf("document %d: %w", i+1, err)
		}
		var err error
		switch head.APIVersion + "/" + head.Kind {
		case "v1/Namespace":
			var o corev1.Namespace
			err = yaml.UnmarshalStrict(doc, &o)
			objs.namespaces = append(objs.namespaces, o)
		case "v1/ConfigMap":
			var o corev1.ConfigMap
			err = yaml.UnmarshalStrict(doc, &o)
			objs.configMaps = append(objs.configMaps, o)
		case "apps/v1/DaemonSet":
			var o appsv1.DaemonSet
			err = yaml.UnmarshalStrict(doc, &o)
			objs.daemonSets = append(objs.daemonSets, o)
		default:
			err = fmt.Errorf("unexpected object %s %s", head.APIVersion, head.Kind)
		}
		if err != nil {
			return objs, fmt.Errorf("document %d (%s): %w", i+1, head.Kind, err)
		}
	}
	return objs, nil
}

// splitDocuments splits a YAML stream at "---" lines, dropping documents
// that hold only comments.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		meaningful := false
		for _, line := range strings.Split(string(d), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				meaningful = true
			}
		}
		if meaningful {
			docs = append(docs, d)
		}
	}
	return docs
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelt field":  "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      tolerations: [{operater: Exists}]\n",
		"misplaced field": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  readOnlyRootFilesystem: true\n",
		"unknown kind":    "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeStrict([]byte(doc)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// checkDaemonSet asserts what the guard needs on every node.
func checkDaemonSet(t *testing.T, ds appsv1.DaemonSet, socket string) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: pullguard never talks to the API server")
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %+v: every taint must be tolerated, so that every node is guarded", spec.Tolerations)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root file system must be read-only")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the pod must not be privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v: drop ALL, add none", sc.Capabilities)
	case sc.RunAsUser == nil || *sc.RunAsUser != 0:
		t.Error("runAsUser must be 0: containerd's socket is root's")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("no %s limit", res)
		}
	}
	for _, want := range []string{"daemon", "--docker-host=none", "--containerd-address=" + socket, "--log-target=stderr", "--log-format=json", "--policy=/etc/pullguard/policy.yaml"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if m.SubPath != "" {
			t.Errorf("mount %s uses subPath, which kubelet never updates", m.MountPath)
		}
	}
	sockDir := filepath.Dir(socket)
	if m, ok := mounts[sockDir]; !ok || m.ReadOnly {
		t.Errorf("containerd's directory %s must be mounted read-write (mounts %+v)", sockDir, c.VolumeMounts)
	} else if hp := volumes[m.Name].HostPath; hp == nil || hp.Path != sockDir {
		t.Errorf("volume %s is not the node's %s: %+v", m.Name, sockDir, volumes[m.Name])
	}
	if m, ok := mounts["/etc/pullguard"]; !ok || !m.ReadOnly || volumes[m.Name].ConfigMap == nil {
		t.Errorf("the policy ConfigMap must be mounted read-only as the directory /etc/pullguard (mounts %+v)", c.VolumeMounts)
	}
	if m, ok := mounts["/run/pullguard"]; !ok || volumes[m.Name].EmptyDir == nil {
		t.Error("/run/pullguard (the status socket) needs a writable emptyDir on a read-only root")
	}
}

// checkPolicy loads the ConfigMap's policy with pullguard's loader and
// checks that it keeps what a node cannot run without.
func checkPolicy(t *testing.T, cm corev1.ConfigMap, image string) *policy.Policy {
	t.Helper()
	src, ok := cm.Data["policy.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no policy.yaml", cm.Name)
	}
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatalf("the shipped policy does not load:\n%v", err)
	}
	if p.Mode != policy.ModeAudit {
		t.Errorf("mode %s: ship audit mode first", p.Mode)
	}
	now := time.Now()
	for _, ref := range []string{"registry.k8s.io/pause:3.10", image} {
		if d := p.Decide(ref, now); !d.Allowed {
			t.Errorf("%s must stay allowed: %s", ref, d.Reason)
		}
	}
	return p
}

func TestManifests(t *testing.T) {
	var all []byte
	for _, f := range []string{namespacePath, manifestPath} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, b...), "\n---\n"...)
	}
	objs, err := decodeStrict(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.namespaces) != 1 || len(objs.configMaps) != 1 || len(objs.daemonSets) != 1 {
		t.Fatalf("want one Namespace, ConfigMap and DaemonSet; got %d, %d, %d", len(objs.namespaces), len(objs.configMaps), len(objs.daemonSets))
	}
	ns := objs.namespaces[0]
	if ns.Name != namespace || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s %v: a hostPath needs the privileged Pod Security level", ns.Name, ns.Labels)
	}
	ds, cm := objs.daemonSets[0], objs.configMaps[0]
	if ds.Namespace != namespace || cm.Namespace != namespace {
		t.Errorf("objects in %q and %q, want %q", ds.Namespace, cm.Namespace, namespace)
	}
	checkDaemonSet(t, ds, "/run/containerd/containerd.sock")
	checkPolicy(t, cm, ds.Spec.Template.Spec.Containers[0].Image)
	if v := ds.Spec.Template.Spec.Volumes; !slices.ContainsFunc(v, func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == cm.Name
	}) {
		t.Errorf("the DaemonSet does not mount the ConfigMap %s", cm.Name)
	}
}

// helmBinary finds helm: $PULLGUARD_HELM, else the test environment's
// tools (integration/testenv.sh builds it once per machine). Without it the
// chart tests skip, except in CI.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("PULLGUARD_HELM"); h != "" {
		return h
	}
	var dirs []string
	if d := os.Getenv("PGENV_TOOLS"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("../integration/testenv.sh", "tools-dir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		h := filepath.Join(d, "helm")
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	msg := "helm not found: set PULLGUARD_HELM, or build the test tools (as root: integration/testenv.sh install)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	out, stderr, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func runHelm(t *testing.T, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	// No user configuration, cache or repositories: the chart alone.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdout, err = cmd.Output()
	return stdout, errOut.String(), err
}

// A misspelt value is an error, not silently ignored (values.schema.json).
func TestHelmRejectsBadValues(t *testing.T) {
	for name, set := range map[string]string{
		"misspelt key":      "metrics.enable=false",
		"relative socket":   "containerd.socket=containerd.sock",
		"unknown log level": "logLevel=verbose",
	} {
		t.Run(name, func(t *testing.T) {
			_, stderr, err := runHelm(t, "template", releaseName, chartDir, "--set", set)
			if err == nil || !strings.Contains(stderr, "schema") {
				t.Errorf("--set %s: err %v, stderr %q; want a schema error", set, err, stderr)
			}
		})
	}
}

func TestHelmLint(t *testing.T) {
	helm(t, "lint", "--strict", chartDir)
}

// kubernetes/pullguard.yaml is the chart rendered with its defaults, so the
// two can never drift apart; -update (make manifests) rewrites it.
func TestManifestIsTheRenderedChart(t *testing.T) {
	got := helm(t, "template", releaseName, chartDir, "--namespace", namespace)
	header := "# Rendered by `make manifests` from deploy/helm/pullguard; edit the chart, not this file.\n# Apply namespace.yaml first (kubectl apply -f deploy/kubernetes/).\n"
	got = append([]byte(header), got...)
	if *update {
		if err := os.WriteFile(manifestPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the chart rendered with its defaults: run make manifests", manifestPath)
	}
}

func TestHelmValues(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("mode: audit\nallow:\n  - image: registry.k8s.io/pause\n  - image: registry.corp.example/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := helm(t, "template", "guard", chartDir, "--namespace", "security",
		"--set", "containerd.socket=/run/k3s/containerd/containerd.sock",
		"--set", "containerd.namespaces={k8s.io,default}",
		"--set", "metrics.enabled=false",
		"--set", "image.repository=registry.corp.example/pullguard", "--set", "image.tag=1.2.3",
		"--set-file", "policy="+policyFile)
	objs, err := decodeStrict(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(objs.daemonSets) != 1 || len(objs.configMaps) != 1 {
		t.Fatalf("want one DaemonSet and one ConfigMap:\n%s", out)
	}
	ds := objs.daemonSets[0]
	checkDaemonSet(t, ds, "/run/k3s/containerd/containerd.sock")
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.corp.example/pullguard:1.2.3" {
		t.Errorf("image %s", c.Image)
	}
	if !slices.Contains(c.Args, "--containerd-namespaces=k8s.io,default") {
		t.Errorf("args %q: namespaces not passed", c.Args)
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-listen") }) || len(c.Ports) > 0 {
		t.Errorf("metrics disabled, yet args %q ports %v", c.Args, c.Ports)
	}
	if ds.Namespace != "security" || objs.configMaps[0].Namespace != "security" {
		t.Error("objects not in the release's namespace")
	}
	checkPolicy(t, objs.configMaps[0], "registry.corp.example/pullguard:1.2.3")
	if p := objs.configMaps[0].Data["policy.yaml"]; !strings.Contains(p, "registry.corp.example/**") {
		t.Errorf("the ConfigMap does not hold the policy given:\n%s", p)
	}
}

// By default the DaemonSet registers with containerd's NRI through the
// node's socket directory (the socket alone would go stale when containerd
// restarts); an empty nriSocket turns NRI off and mounts nothing.
func TestHelmNRISocket(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     []string
		wantArg string
		wantDir string
	}{
		{"default", nil, "--nri-socket=/var/run/nri/nri.sock", "/var/run/nri"},
		{"elsewhere", []string{"--set", "containerd.nriSocket=/run/k3s/nri/nri.sock"}, "--nri-socket=/run/k3s/nri/nri.sock", "/run/k3s/nri"},
		{"off", []string{"--set", "containerd.nriSocket="}, "--nri-socket=none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := helm(t, append([]string{"template", "guard", chartDir}, tc.set...)...)
			objs, err := decodeStrict(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			pod := objs.daemonSets[0].Spec.Template.Spec
			if !slices.Contains(pod.Containers[0].Args, tc.wantArg) {
				t.Errorf("args %q: no %s", pod.Containers[0].Args, tc.wantArg)
			}
			var mounted, onNode []string
			for _, m := range pod.Containers[0].VolumeMounts {
				if m.Name == "nri" {
					mounted = append(mounted, m.MountPath)
				}
			}
			for _, v := range pod.Volumes {
				if v.Name == "nri" && v.HostPath != nil {
					onNode = append(onNode, v.HostPath.Path)
				}
			}
			want := []string(nil)
			if tc.wantDir != "" {
				want = []string{tc.wantDir}
			}
			if !slices.Equal(mounted, want) || !slices.Equal(onNode, want) {
				t.Errorf("nri mounted at %q from the node's %q, want %q", mounted, onNode, want)
			}
		})
	}
}

// With a policy source the daemon is told where to fetch it, which key
// verifies it and where to keep the last verified copy on the node; the key
// rides in the ConfigMap, and a source without a key is refused at render.
func TestHelmPolicySource(t *testing.T) {
	const source = "oci://registry.corp.example/security/pullguard-policy:prod"
	keyFile := filepath.Join(t.TempDir(), "cosign.pub")
	key := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	out := helm(t, "template", "guard", chartDir, "--set", "policySource.source="+source,
		"--set-file", "policySource.key="+keyFile, "--set", "policySource.interval=5m")
	objs, err := decodeStrict(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(objs.daemonSets) != 1 || len(objs.configMaps) != 1 {
		t.Fatalf("want one DaemonSet and one ConfigMap:\n%s", out)
	}
	pod := objs.daemonSets[0].Spec.Template.Spec
	args := pod.Containers[0].Args
	for _, want := range []string{"--policy-source=" + source, "--policy-source-key=/etc/pullguard/policy-source.pub",
		"--policy-source-interval=5m"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q: no %s", args, want)
		}
	}
	checkStateDir(t, pod)
	if got := objs.configMaps[0].Data["policy-source.pub"]; strings.TrimSpace(got) != strings.TrimSpace(key) {
		t.Errorf("ConfigMap policy-source.pub = %q, want the key given", got)
	}

	_, stderr, err := runHelm(t, "template", "guard", chartDir, "--set", "policySource.source="+source)
	if err == nil || !strings.Contains(stderr, "policySource.key") {
		t.Errorf("a source without a key: err %v, stderr %q; want the key required", err, stderr)
	}
}

// With or without a policy source, the daemon keeps its state (verdicts
// reached on verified evidence, so a restarted pod does not ask the
// registry about every image again) on the node.
func TestHelmStateDir(t *testing.T) {
	objs, err := decodeStrict(helm(t, "template", "guard", chartDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.daemonSets) != 1 {
		t.Fatalf("want one DaemonSet, got %d", len(objs.daemonSets))
	}
	checkStateDir(t, objs.daemonSets[0].Spec.Template.Spec)
}

// checkStateDir: --state-dir is below the node's /var/lib/pullguard,
// mounted writable.
func checkStateDir(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	if args := pod.Containers[0].Args; !slices.Contains(args, "--state-dir=/var/lib/pullguard/state") {
		t.Errorf("args %q: no --state-dir=/var/lib/pullguard/state", args)
	}
	mounted := slices.ContainsFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == "/var/lib/pullguard" && !m.ReadOnly
	})
	onNode := slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool {
		return v.HostPath != nil && v.HostPath.Path == "/var/lib/pullguard"
	})
	if !mounted || !onNode {
		t.Errorf("the state directory is not the node's /var/lib/pullguard mounted writable: mounts %v volumes %v",
			pod.Containers[0].VolumeMounts, pod.Volumes)
	}
}

// The example alert rules parse strictly and name only series pullguard
// exports: a renamed metric must not leave an alert that can never fire.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("prometheus/pullguard-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("allow:\n  - image: nginx\n")})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Runtimes: []string{"containerd"}, Policy: staticPolicy{p}})
	m.Reconciled("containerd", "start", time.Second, nil) // a gauge set only by a reconcile
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+s] = true
			}
		}
	}
	name := regexp.MustCompile(`pullguard_[a-z_]+`)
	n := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q: alert, expr, severity and summary are required", r.Alert)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("rule %s: for: %v", r.Alert, err)
				}
			}
			used := name.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("rule %s uses no pullguard series", r.Alert)
			}
			for _, u := range used {
				if !exported[u] {
					t.Errorf("rule %s uses %s, which pullguard does not export", r.Alert, u)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current() *policy.Policy { return s.p }
