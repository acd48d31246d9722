// Package deploy holds how pullguard is deployed beyond packages: the
// container image builder (image/), the Kubernetes manifests (kubernetes/)
// and the Helm chart (helm/pullguard). Its tests check the manifests and
// the chart without a cluster.
package deploy
