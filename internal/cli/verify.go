package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

type judgeOptions struct {
	policyPath string
	namespace  string
	output     string
}

func (o *judgeOptions) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.policyPath, "policy", "", "policy file (required)")
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "default", "namespace the images would run in")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
}

func (o *judgeOptions) validate() error {
	if o.output != "text" && o.output != "json" {
		return usageErr("--output: %q is not one of text, json", o.output)
	}
	return nil
}

func newVerifyCmd() *cobra.Command {
	var o judgeOptions
	cmd := &cobra.Command{
		Use:   "verify --policy FILE IMAGE...",
		Short: "Decide, as the webhook would, whether images may run",
		Long: `Decide, as the webhook would, whether images may run. One line per image:
  ALLOW <image> <digest-or--> <reason>
  DENY <image> <reason>
Exit code 0 when every image is admitted, 1 when one is denied (in enforce mode),
2 for usage or policy errors.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			p, err := loadPolicy(o.policyPath)
			if err != nil {
				return err
			}
			warnPolicy(cmd.ErrOrStderr(), o.policyPath, p)
			e := newEngine(p, nil)
			ctx, cancel := context.WithTimeout(cmd.Context(), p.Settings.Deadline)
			defer cancel()
			rep := e.Evaluate(ctx, engine.Request{Namespace: o.namespace, Images: args})
			if err := printReport(cmd.OutOrStdout(), o.output, "", rep); err != nil {
				return err
			}
			return verdict(cmd.ErrOrStderr(), rep)
		},
	}
	o.bind(cmd)
	return cmd
}

// verdict maps a report to the exit status: a deny in enforce mode fails.
func verdict(stderr io.Writer, reps ...engine.Report) error {
	denied := false
	mode := policy.Enforce
	for _, r := range reps {
		mode = r.Mode
		if len(r.Denied()) > 0 {
			denied = true
		}
	}
	if !denied {
		return nil
	}
	if mode != policy.Enforce {
		fmt.Fprintf(stderr, "trustgate: policy mode is %s: the webhook would admit these images with a warning\n", mode)
		return nil
	}
	return errDenied
}

type jsonDecision struct {
	Object  string `json:"object,omitempty"`
	Image   string `json:"image"`
	Allowed bool   `json:"allowed"`
	// Decision is allow, deny (a definite no) or unavailable (denied
	// because a check could not complete: retrying may pass).
	Decision string   `json:"decision"`
	Rule     string   `json:"rule,omitempty"`
	Digest   string   `json:"digest,omitempty"`
	Pinned   string   `json:"pinned,omitempty"`
	Signers  []string `json:"signers,omitempty"`
	Reason   string   `json:"reason"`
	// Verifiers is what each verifier of the rule said: passed, untrusted,
	// unavailable or skipped (not needed for the verdict), with its reason.
	Verifiers []engine.Outcome `json:"verifiers,omitempty"`
}

func printReport(w io.Writer, format, object string, rep engine.Report) error {
	if rep.Exempt {
		if format == "json" {
			return nil
		}
		_, err := fmt.Fprintf(w, "%sEXEMPT namespace is exempt from the policy\n", prefix(object))
		return err
	}
	for _, d := range rep.Decisions {
		var err error
		if format == "json" {
			err = json.NewEncoder(w).Encode(jsonDecision{
				Object: object, Image: d.Image, Allowed: d.Allowed, Decision: d.Verdict(), Rule: d.Rule, Digest: d.Digest,
				Pinned: d.Pin, Signers: d.Signers, Reason: d.Reason, Verifiers: d.Outcomes,
			})
		} else if d.Allowed {
			digest := d.Digest
			if digest == "" {
				digest = "-"
			}
			_, err = fmt.Fprintf(w, "%sALLOW %s %s %s\n", prefix(object), d.Image, digest, oneLine(describe(d)))
		} else {
			_, err = fmt.Fprintf(w, "%sDENY %s %s\n", prefix(object), d.Image, oneLine(describe(d)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func describe(d engine.Decision) string {
	if d.Rule == "" {
		return d.Reason
	}
	return fmt.Sprintf("(rule %s) %s", d.Rule, d.Reason)
}

func prefix(object string) string {
	if object == "" {
		return ""
	}
	return object + " "
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
