// Command kubectl is a build shim for machines without a recent kubectl:
// hack/setup.sh builds it from the k8s.io/kubectl module at the version of the
// test API server when no kubectl is on PATH (Debian's kubernetes-client is
// 1.20, whose embedded kustomize cannot build deploy/). It lives in its own
// module so that kubectl's dependencies stay out of trustgate's go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// cmdutil.CheckErr has already printed the error, as kubectl does.
		os.Exit(1)
	}
}
