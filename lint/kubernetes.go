package lint

import (
	"fmt"

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
	path, ok := podSpecPath[kind]
	if !ok {
		return nil
	}
	spec := obj
	for _, key := range path {
		_, spec = lookup(spec, key)
	}
	for _, list := range containerLists {
		_, cs := lookup(spec, list.field)
		if cs == nil || cs.Kind != yaml.SequenceNode {
			continue
		}
		for _, c := range cs.Content {
			k, v := lookup(c, "image")
			if k == nil {
				continue // the API server rejects it; nothing is pulled
			}
			_, cn := lookup(c, "name")
			cname, _ := scalar(cn)
			u, err := imageAt(k, v, fmt.Sprintf("%s %s %s %s", kind, name, list.noun, cname))
			if err != nil {
				return err
			}
			*uses = append(*uses, u)
		}
	}
	return nil
}
