// Command kube-apiserver is a build shim: the k8s.io/kubernetes module cannot be
// `go install`ed because its go.mod replaces its staging modules with local
// paths, so this separate module pins them and builds the real API server for
// trustgate's end-to-end tests. It lives in its own module so that none of
// Kubernetes' dependencies leak into trustgate's go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
