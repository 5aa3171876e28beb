// Command kubesandbox runs a throwaway Kubernetes API server (etcd +
// kube-apiserver on loopback, no nodes) until it gets SIGTERM or SIGINT. It
// writes an admin kubeconfig to -kubeconfig and prints it, so `make demo` and
// people can point kubectl at it.
//
//	go run ./test/harness/kube/cmd/kubesandbox -kubeconfig /tmp/demo.kubeconfig
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "kubesandbox: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "write the admin kubeconfig to this path (required)")
	namespaces := flag.String("namespaces", "", "comma-separated namespaces to create, each with its default ServiceAccount")
	flag.Parse()
	if *kubeconfig == "" {
		return errors.New("-kubeconfig is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	c, err := kube.New(ctx, kube.Options{Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubesandbox: %v\n", err)
		}
	}()
	for _, ns := range splitList(*namespaces) {
		if err := c.CreateNamespace(ns); err != nil {
			return err
		}
	}
	if dir := filepath.Dir(*kubeconfig); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create folder for kubeconfig: %w", err)
		}
	}
	cfg := c.KubeconfigYAML()
	if err := os.WriteFile(*kubeconfig, cfg, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	fmt.Fprintf(os.Stderr, "kubesandbox: API server %s ready; kubeconfig written to %s; SIGTERM or Ctrl-C stops it\n", c.URL, *kubeconfig)
	os.Stdout.Write(cfg)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "kubesandbox: stopping")
	// The kubeconfig points at a server that is about to vanish.
	_ = os.Remove(*kubeconfig)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
