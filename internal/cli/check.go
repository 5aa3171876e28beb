package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

func newCheckCmd() *cobra.Command {
	var o judgeOptions
	var file string
	var pin bool
	cmd := &cobra.Command{
		Use:   "check --policy FILE -f MANIFESTS.yaml",
		Short: "Judge every image of every workload in Kubernetes manifests",
		Long: `Judge every image of every workload (Pods and the pod templates of Deployments,
ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs and ReplicationControllers:
containers, init and ephemeral containers and image volumes) in multi-document YAML
or a List, as the webhook would. Objects without a namespace
are judged in --namespace. With --pin, print the manifests with every verified image
pinned to its digest instead (for pipelines that commit digests: the GitOps path).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if file == "" {
				return usageErr("-f is required (a file, or - for standard input)")
			}
			p, err := loadPolicy(o.policyPath)
			if err != nil {
				return err
			}
			warnPolicy(cmd.ErrOrStderr(), o.policyPath, p)
			in, closeIn, err := openInput(cmd, file)
			if err != nil {
				return err
			}
			defer closeIn()
			data, err := io.ReadAll(io.LimitReader(in, workload.MaxManifestBytes+1))
			if err != nil {
				return usageErr("read %s: %v", file, err)
			}
			docs, err := workload.ParseManifestDocuments(data)
			if err != nil {
				return usageErr("%s: %v", file, err)
			}
			e := newEngine(p, nil)
			var reps []engine.Report
			for _, doc := range docs {
				ns := o.namespace
				for _, obj := range doc.Objects {
					if obj.Namespace != "" {
						ns = obj.Namespace
					}
					ctx, cancel := context.WithTimeout(cmd.Context(), p.Settings.Deadline)
					rep := e.Evaluate(ctx, engine.Request{Namespace: ns, Images: obj.Images(), Pin: pin})
					cancel()
					reps = append(reps, rep)
					if pin {
						if _, err := doc.Pin(obj, rep); err != nil {
							return usageErr("pin %s: %v", objectName(obj), err)
						}
						if len(rep.Denied()) > 0 {
							if err := printReport(cmd.ErrOrStderr(), "text", objectName(obj), rep); err != nil {
								return err
							}
						}
						continue
					}
					if err := printReport(cmd.OutOrStdout(), o.output, objectName(obj), rep); err != nil {
						return err
					}
				}
			}
			if pin {
				if err := workload.WriteManifestDocuments(cmd.OutOrStdout(), docs); err != nil {
					return err
				}
			}
			return verdict(cmd.ErrOrStderr(), reps...)
		},
	}
	o.bind(cmd)
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifests file, or - for standard input")
	cmd.Flags().BoolVar(&pin, "pin", false, "print the manifests with verified images pinned to their digests")
	return cmd
}

func openInput(cmd *cobra.Command, file string) (io.Reader, func(), error) {
	if file == "-" {
		return cmd.InOrStdin(), func() {}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	return f, func() { f.Close() }, nil
}

func objectName(o *workload.Object) string {
	name := o.Name
	if name == "" {
		name = o.GenerateName + "*"
	}
	s := fmt.Sprintf("%s/%s", o.Kind.Kind, name)
	if o.Source != "" {
		s += " (" + o.Source + ")"
	}
	return s
}
