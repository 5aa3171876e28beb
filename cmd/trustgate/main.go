// Command trustgate is a Kubernetes admission webhook that admits only
// container images whose signatures verify. See internal/cli.
package main

import "github.com/trustgate-dev/trustgate/internal/cli"

func main() { cli.Main() }
