// Package cli is trustgate's composition root: it parses flags, builds the
// policy, verifiers, engine and server, and maps outcomes to exit codes.
// Nothing imports it but cmd/trustgate.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes, shared by every command.
const (
	ExitOK     = 0 // everything admitted
	ExitDenied = 1 // something denied (or could not be verified)
	ExitUsage  = 2 // usage or configuration error
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// errDenied is returned by commands whose judgement denied something; the
// output already says what and why.
var errDenied = &exitError{code: ExitDenied, err: errors.New("denied")}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// NewRoot returns the trustgate command tree.
func NewRoot() *cobra.Command {
	registerSchemes()
	root := &cobra.Command{
		Use:   "trustgate",
		Short: "Admit only container images whose signatures verify",
		Long: `trustgate is a Kubernetes admission webhook that admits only images signed by keys
the cluster trusts (Docker Content Trust / Notary v1, and successors), and pins
them to the verified digest. The same decision is available from the command line
for CI pipelines (verify, check).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newVerifyCmd(), newCheckCmd(), newCertsCmd(), newDCTCmd(), newAuditCmd(), newVersionCmd())
	return root
}

// Execute runs the CLI with args and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	return executeWith(NewRoot(), args, stdout, stderr)
}

func executeWith(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	return executeContext(context.Background(), root, args, stdout, stderr)
}

func executeContext(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee != errDenied {
			fmt.Fprintln(stderr, "trustgate:", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors (unknown flag, wrong argument count) are usage errors.
	fmt.Fprintln(stderr, "trustgate:", err)
	return ExitUsage
}

// Main is the entry point of cmd/trustgate.
func Main() { os.Exit(Execute(os.Args[1:], os.Stdout, os.Stderr)) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print trustgate's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "trustgate %s\n", Version)
			return nil
		},
	}
}
