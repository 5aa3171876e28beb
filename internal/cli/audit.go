package cli

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustgate-dev/trustgate/internal/audit"
	"github.com/trustgate-dev/trustgate/internal/inventory"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/pullsecrets"
	"github.com/trustgate-dev/trustgate/internal/resolve"
)

type auditOptions struct {
	policies    []string
	kubeconfig  string
	namespaces  []string
	output      string
	concurrency int
	pageSize    int64
}

func newAuditCmd() *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit --policy FILE [--policy CANDIDATE] [-n NS]...",
		Short: "Judge everything a live cluster runs, as the webhook would judge it now",
		Long: `Read Pods and every workload template trustgate judges from a live cluster
(kubeconfig, or in-cluster) and judge each distinct image once with the policy.
A second --policy answers "what if I switch to this one" side by side.
Output: a table (default), -o json or -o csv, then a summary: objects that would
be denied today, that could not be checked, that are admitted only through
deprecated verifiers, and that sit in exempt namespaces.
Exit code 0 when everything is admitted by the first policy, 1 otherwise, 2 for
usage, policy or cluster errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAudit(cmd, o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.policies, "policy", nil, "policy file (required); repeat once for a candidate policy")
	f.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (default $KUBECONFIG; in-cluster when empty)")
	f.StringArrayVarP(&o.namespaces, "namespace", "n", nil, "namespace to audit (repeatable; default all)")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table, json or csv")
	f.IntVar(&o.concurrency, "concurrency", 8, "objects judged at once")
	f.Int64Var(&o.pageSize, "page-size", 500, "objects per API list call")
	return cmd
}

func runAudit(cmd *cobra.Command, o auditOptions) error {
	switch {
	case len(o.policies) == 0:
		return usageErr("--policy is required")
	case len(o.policies) > 2:
		return usageErr("--policy: at most two (the current policy and a candidate)")
	case o.output != "table" && o.output != "json" && o.output != "csv":
		return usageErr("--output: %q is not one of table, json, csv", o.output)
	case o.concurrency < 1 || o.pageSize < 1:
		return usageErr("--concurrency and --page-size must be positive")
	}
	client, err := pullsecrets.NewClient(o.kubeconfig)
	if err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	a := &audit.Auditor{Concurrency: o.concurrency}
	for i, path := range o.policies {
		p, err := loadPolicy(path)
		if err != nil {
			return err
		}
		warnPolicy(cmd.ErrOrStderr(), path, p)
		name := "current"
		if i > 0 {
			name = filepath.Base(path)
		}
		eng := newEngine(p, nil, resolve.WithPodKeychain(pullsecrets.Keychain(client)))
		a.Judges = append(a.Judges, audit.Judge{Name: name, Engine: eng})
	}
	prog := newProgress(cmd.ErrOrStderr())
	l := &inventory.Lister{Client: client, Namespaces: o.namespaces, PageSize: o.pageSize}
	st, err := l.Walk(cmd.Context(), func(pg inventory.Page) error {
		for _, m := range pg.Malformed {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: not judged: %v\n", m)
		}
		if err := a.Add(cmd.Context(), pg.Objects); err != nil {
			return err
		}
		prog.page(pg.Kind.Resource, len(pg.Objects))
		return nil
	})
	prog.done(st)
	if err != nil {
		return &exitError{code: ExitUsage, err: fmt.Errorf("audit: %w", err)}
	}
	rows, sums := a.Result()
	if err := audit.Write(cmd.OutOrStdout(), o.output, rows, sums); err != nil {
		return err
	}
	if audit.Denied(rows) {
		return &exitError{code: ExitDenied, err: fmt.Errorf("%s", sums[0].String())}
	}
	return nil
}

// progress reports how far a walk has come: a line rewritten in place on a
// terminal, plain lines (one per page) otherwise.
type progress struct {
	w       io.Writer
	tty     bool
	objects int
	start   time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) page(resource string, n int) {
	p.objects += n
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[Kaudit: %d objects judged (%s)", p.objects, resource)
		return
	}
	fmt.Fprintf(p.w, "audit: %d %s judged, %d objects in all\n", n, resource, p.objects)
}

func (p *progress) done(st inventory.Stats) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "audit: %d objects in %d API pages, %s\n", st.Objects, st.Pages, time.Since(p.start).Round(time.Millisecond))
}

// warnPolicy prints what the policy's verifiers warn about, one line each.
func warnPolicy(w io.Writer, path string, p *policy.Policy) {
	for _, s := range policyWarnings(p) {
		fmt.Fprintf(w, "warning: %s: %s\n", path, s)
	}
}

// policyWarnings collects what the policy's verifiers warn about at load
// (a notary server that was retired, say).
func policyWarnings(p *policy.Policy) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(p.Verifiers)) {
		if w, ok := p.Verifiers[name].(interface{ Warnings() []string }); ok {
			for _, s := range w.Warnings() {
				out = append(out, fmt.Sprintf("verifier %s: %s", name, s))
			}
		}
	}
	return out
}
