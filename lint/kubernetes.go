package lint

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// podSpecPath is where each workload kind keeps its pod spec.
var podSpecPath = map[string][]string{
	"Pod":                   {"spec"},
	"PodTemplate":           {"template", "spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// containerLists are the pod spec fields holding containers, and what a
// finding calls one of their entries.
var containerLists = []struct{ field, noun string }{
	{"initContainers", "initContainer"},
	{"containers", "container"},
	{"ephemeralContainers", "ephemeralContainer"},
}

// kubernetesImages lists the container images of every workload in a
// multi-document manifest, List items included. objects counts the
// Kubernetes objects (apiVersion and kind) seen, so that a directory walk
// can tell a manifest from any other YAML file.
func kubernetesImages(data []byte) (uses []imageUse, objects int, err error) {
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, 0, err
	}
	for _, doc := range docs {
		if err := objectImages(doc, &uses, &objects, 0); err != nil {
			return nil, 0, err
		}
	}
	return uses, objects, nil
}

func objectImages(obj *yaml.Node, uses *[]imageUse, objects *int, depth int) error {
	_, kindNode := lookup(obj, "kind")
	_, apiNode := lookup(obj, "apiVersion")
	kind, ok := scalar(kindNode)
	if _, isAPI := scalar(apiNode); !ok || !isAPI || depth > 10 {
		return nil
	}
	*objects++
	_, nameNode := lookup(obj, "metadata")
	_, nameNode = lookup(nameNode, "name")
	name, _ := scalar(nameNode)

	if kind == "List" || (len(kind) > 4 && kind[len(kind)-4:] == "List") {
		_, items := lookup(obj, "items")
		if items == nil || items.Kind != yaml.SequenceNode {
			return nil
		}
		for _, item := range items.Content {
			if err := objectImages(resolve(item), uses, objects, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	prefix := nonEmpty(kind, name)
	path, ok := podSpecPath[kind]
	if !ok {
		// A custom resource (an Argo Rollout, a Knative Service, an
		// OpenShift DeploymentConfig...) keeps its pod specs where its
		// controller expects them: look for container lists anywhere in it.
		return containersAnywhere(obj, prefix, uses, 0)
	}
	spec := obj
	for _, key := range path {
		_, spec = lookup(spec, key)
	}
	for _, list := range containerLists {
		_, cs := lookup(spec, list.field)
		if err := containerImages(cs, list.noun, prefix, uses); err != nil {
			return err
		}
	}
	return nil
}

// containerImages lists the image of each container in a container list.
func containerImages(cs *yaml.Node, noun string, prefix []string, uses *[]imageUse) error {
	if cs == nil || cs.Kind != yaml.SequenceNode {
		return nil
	}
	for _, c := range cs.Content {
		k, v := lookup(c, "image")
		if k == nil {
			continue // the API server rejects it; nothing is pulled
		}
		_, cn := lookup(c, "name")
		cname, _ := scalar(cn)
		source := strings.Join(nonEmpty(append(append([]string{}, prefix...), noun, cname)...), " ")
		u, err := imageAt(k, v, source)
		if err != nil {
			return err
		}
		*uses = append(*uses, u)
	}
	return nil
}

// containersAnywhere finds the container lists (containers,
// initContainers, ephemeralContainers: sequences of mappings) at any depth
// of an object, in document order.
func containersAnywhere(n *yaml.Node, prefix []string, uses *[]imageUse, depth int) error {
	n = resolve(n)
	if n == nil || depth > 100 {
		return nil
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if err := containersAnywhere(c, prefix, uses, depth+1); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for _, kv := range pairs(n) {
			if noun, ok := containerNoun(kv[0].Value); ok && kv[1] != nil && kv[1].Kind == yaml.SequenceNode {
				if err := containerImages(kv[1], noun, prefix, uses); err != nil {
					return err
				}
				continue
			}
			if err := containersAnywhere(kv[1], prefix, uses, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func containerNoun(field string) (string, bool) {
	for _, l := range containerLists {
		if l.field == field {
			return l.noun, true
		}
	}
	return "", false
}

// nonEmpty drops the empty words, so that an object or container without a
// name leaves no double space in a finding's source.
func nonEmpty(words ...string) []string {
	out := words[:0]
	for _, w := range words {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}
