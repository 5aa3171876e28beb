package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/trustgate-dev/trustgate/internal/admission"
	"github.com/trustgate-dev/trustgate/internal/audit"
	"github.com/trustgate-dev/trustgate/internal/certs"
	"github.com/trustgate-dev/trustgate/internal/certwatch"
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/inventory"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/pullsecrets"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/server"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

type serveOptions struct {
	policyPath   string
	addr         string
	metricsAddr  string
	tlsCert      string
	tlsKey       string
	clientCA     string
	caOut        string
	maxBody      int64
	reloadPeriod time.Duration
	logLevel     string
	pullSecrets  bool
	kubeconfig   string
	reverify     time.Duration
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve --policy FILE",
		Short: "Run the admission webhook (HTTPS: /validate, /mutate, /healthz, /readyz, /metrics)",
		Long: `Run the admission webhook over HTTPS. Without --tls-cert, a CA and serving
certificate for 127.0.0.1 and localhost are made in memory and the CA bundle is written
to --ca-out (for the webhook configuration's caBundle). Certificate files, the policy
file and the files it names (root keys, CA bundles, docker configs) are re-read when they
change; a broken new policy is refused and the old one stays in force. Verifiers whose
configuration and files did not change keep what they learned across reloads. SIGTERM
drains in-flight requests before exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.policyPath, "policy", "", "policy file (required)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:8443", "HTTPS listen address")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "optional plain-HTTP address for /metrics only (the HTTPS address serves it too)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serving certificate PEM (re-read on change)")
	f.StringVar(&o.tlsKey, "tls-key", "", "serving key PEM (re-read on change)")
	f.StringVar(&o.clientCA, "client-ca", "", "require client certificates signed by this CA (mutual TLS with the API server)")
	f.StringVar(&o.caOut, "ca-out", "", "where to write the CA bundle of the self-signed certificate (default: a file in the temp folder)")
	f.Int64Var(&o.maxBody, "max-body-bytes", admission.DefaultMaxBodyBytes, "largest AdmissionReview body accepted")
	f.DurationVar(&o.reloadPeriod, "reload-period", 2*time.Second, "how often the policy file and the files it names are checked for changes")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.pullSecrets, "pull-secrets", false, "resolve digests for pinning with the pod's imagePullSecrets, read from the Kubernetes API (needs RBAC: deploy/components/image-pull-secrets)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for --pull-secrets and --reverify-interval when not running in a cluster")
	f.DurationVar(&o.reverify, "reverify-interval", 0, "re-judge the images of running pods this often, export gauges and record Events on pods that no longer verify (0: off; needs RBAC: deploy/components/reverify)")
	return cmd
}

func runServe(cmd *cobra.Command, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageErr("--log-level: %v", err)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErr("--tls-cert and --tls-key go together")
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	// One loader for the process: verifiers whose configuration (and the
	// files it names) did not change keep their state across reloads. The
	// serve logger reaches them (root rotations, first-use roots). Their
	// outbound requests share one bound on requests in flight (issue 9).
	loader := policy.NewLoader(verify.Registered(), verify.Deps{Logger: log,
		Transport: verify.LimitRequests(nil, verify.DefaultMaxRequests)})
	p, err := loadPolicyWith(loader, o.policyPath)
	if err != nil {
		return err
	}
	if o.reverify < 0 {
		return usageErr("--reverify-interval: must not be negative")
	}
	var ropts []resolve.Option
	var client kubernetes.Interface
	if o.pullSecrets || o.reverify > 0 {
		if client, err = pullsecrets.NewClient(o.kubeconfig); err != nil {
			return usageErr("--pull-secrets/--reverify-interval: %v", err)
		}
	}
	if o.pullSecrets {
		ropts = append(ropts, resolve.WithPodKeychain(pullsecrets.Keychain(client)))
	}
	eng := newEngine(p, m, ropts...)
	log.Info("policy loaded", "path", o.policyPath, "generation", p.Generation, "rules", len(p.Rules), "mode", p.Mode)
	for _, w := range policyWarnings(p) {
		log.Warn("policy warning", "path", o.policyPath, "warning", w)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	getCert, err := servingCertificate(ctx, o, log)
	if err != nil {
		return err
	}
	hooks := admission.Options{Evaluator: eng, Logger: log, Metrics: m, DeadlineFunc: func() time.Duration { return eng.Policy().Settings.Deadline }, MaxBodyBytes: o.maxBody}
	validate, err := admission.NewValidating(hooks)
	if err != nil {
		return usageErr("%v", err)
	}
	mutate, err := admission.NewMutating(hooks)
	if err != nil {
		return usageErr("%v", err)
	}
	go watchPolicy(ctx, o.policyPath, o.reloadPeriod, loader, eng, m, log)
	if o.reverify > 0 {
		// Its own engine: its own cache (each pass re-verifies what expired)
		// and no admission metrics, following the policy in force. Its
		// verifiers are the admission's, behind the same process-wide bound
		// on upstream requests, so a pass is kept narrow (a few images at a
		// time) and cannot crowd admissions out of that bound.
		rv := &audit.Reverifier{
			Engine:   newEngineWith(p, nil, []engine.Option{engine.WithParallel(2), engine.WithMaxUpstream(4)}, ropts...),
			Policy:   eng.Policy,
			Walk:     runningPods(client),
			Events:   inventory.EventRecorder(client, "trustgate"),
			Interval: o.reverify,
			Logger:   log,
		}
		if err := rv.Register(reg); err != nil {
			return usageErr("%v", err)
		}
		go rv.Run(ctx)
	}

	srv, err := server.New(server.Options{
		Addr:           o.addr,
		GetCertificate: getCert,
		ClientCAFile:   o.clientCA,
		Validate:       validate,
		Mutate:         mutate,
		Ready:          func() bool { return eng.Policy() != nil },
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		MetricsAddr:    o.metricsAddr,
		Logger:         log,
	})
	if err != nil {
		return usageErr("%v", err)
	}
	if err := srv.Run(ctx); err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	log.Info("stopped")
	return nil
}

// servingCertificate returns the certificate source: the watched files, or a
// self-signed pair made in memory whose CA bundle is written out.
func servingCertificate(ctx context.Context, o serveOptions, log *slog.Logger) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if o.tlsCert != "" {
		w, err := certwatch.New(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, usageErr("serving certificate: %v", err)
		}
		w.Logger = log
		go w.Start(ctx)
		return w.GetCertificate, nil
	}
	caPEM, cert, err := certs.SelfSigned([]string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	out := o.caOut
	if out == "" {
		out = filepath.Join(os.TempDir(), fmt.Sprintf("trustgate-ca-%d.crt", os.Getpid()))
	}
	if err := os.WriteFile(out, caPEM, 0o644); err != nil {
		return nil, usageErr("write CA bundle: %v", err)
	}
	log.Info("no --tls-cert given: serving a self-signed certificate for 127.0.0.1 and localhost", "caBundle", out)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, nil
}

// watchPolicy reloads the policy when the policy file or a file its
// verifiers read (root keys, CA bundles, docker configs) changes: a changed
// root key file takes effect like a changed policy. A policy that fails to
// load is logged and counted once per state of the files; the one in force
// stays. After a refusal the files the refused policy tried to read are
// watched too, so creating or fixing one of them retries.
func watchPolicy(ctx context.Context, path string, period time.Duration, loader *policy.Loader, eng *engine.Engine, m *metrics.Metrics, log *slog.Logger) {
	watched := func() []string {
		var paths []string
		for _, in := range eng.Policy().Inputs {
			paths = append(paths, in.Path)
		}
		return append(paths, loader.Attempted()...)
	}
	last := recordedState(eng.Policy().Inputs)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := diskState(watched())
		if now == last {
			continue
		}
		last = now
		old := eng.Policy()
		p, err := loadPolicyWith(loader, path)
		if err != nil {
			m.PolicyReloads.WithLabelValues("error").Inc()
			log.Error("policy reload refused; the previous policy stays in force", "path", path, "error", err)
			// Watch what the refused policy needed as well.
			last = diskState(watched())
			continue
		}
		eng.SetPolicy(p)
		last = recordedState(p.Inputs)
		kept := 0
		for _, v := range p.Verifiers {
			for _, ov := range old.Verifiers {
				if v == ov {
					kept++
					break
				}
			}
		}
		m.PolicyReloads.WithLabelValues("ok").Inc()
		log.Info("policy reloaded", "path", path, "generation", p.Generation, "rules", len(p.Rules), "mode", p.Mode,
			"verifiersKept", kept, "verifiersBuilt", len(p.Verifiers)-kept, "files", len(p.Inputs))
	}
}

// recordedState and diskState describe files by content, in one format:
// equal when the files on disk are those a policy was built from.
func recordedState(inputs []policy.Input) string {
	sums := map[string]string{}
	for _, in := range inputs {
		sums[in.Path] = in.SHA256
	}
	return formatState(sums)
}

func diskState(paths []string) string {
	sums := map[string]string{}
	for _, p := range paths {
		if _, done := sums[p]; done {
			continue
		}
		sums[p] = ""
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		h := sha256.New()
		// Bounded like the loader's reads; a longer file still differs.
		_, err = io.Copy(h, io.LimitReader(f, policy.MaxReferencedFileBytes+1))
		f.Close()
		if err == nil {
			sums[p] = hex.EncodeToString(h.Sum(nil))
		}
	}
	return formatState(sums)
}

func formatState(sums map[string]string) string {
	paths := make([]string, 0, len(sums))
	for p := range sums {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "%q %s\n", p, sums[p])
	}
	return b.String()
}

// runningPods walks the cluster's pods for re-verification.
func runningPods(client kubernetes.Interface) audit.Walker {
	l := &inventory.Lister{Client: client, Kinds: inventory.Kinds[:1]}
	return func(ctx context.Context, fn func([]*workload.Object, []string) error) error {
		_, err := l.Walk(ctx, func(pg inventory.Page) error { return fn(pg.Objects, pg.UIDs) })
		return err
	}
}
