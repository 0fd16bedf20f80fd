//go:build tools

// Package tools pins the control-plane binaries that `make tools` builds.
// k8s.io/kubernetes is not `go install`-able on its own (its go.mod maps the
// staging modules to ./staging/...), so this wrapper module requires it and
// replaces each staging module with its published v0.x build (see
// hack/gen-k8s-replaces.sh).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
