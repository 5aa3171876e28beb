package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trustgate-dev/trustgate/internal/certs"
)

func newCertsCmd() *cobra.Command {
	var o certs.Options
	var out string
	cmd := &cobra.Command{
		Use:   "certs --service NAME --namespace NS --out DIR",
		Short: "Write a CA and a serving certificate for the webhook Service",
		Long: `Write ca.crt, tls.crt and tls.key to DIR: a new CA and a serving certificate
for the Service (SANs NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local, plus any
--dns and --ip). Put tls.crt/tls.key in the trustgate-tls Secret and the base64 of
ca.crt in the webhook configurations' caBundle (see deploy/README.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Service == "" || o.Namespace == "" || out == "" {
				return usageErr("--service, --namespace and --out are required")
			}
			if err := certs.Write(out, o); err != nil {
				return usageErr("%v", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/ca.crt, %s/tls.crt, %s/tls.key\n", out, out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Service, "service", "", "Service name of the webhook")
	cmd.Flags().StringVar(&o.Namespace, "namespace", "", "namespace of the Service")
	cmd.Flags().StringVar(&out, "out", "", "output folder")
	cmd.Flags().StringSliceVar(&o.DNSNames, "dns", nil, "extra DNS SANs")
	cmd.Flags().StringSliceVar(&o.IPs, "ip", nil, "extra IP SANs")
	cmd.Flags().DurationVar(&o.Validity, "validity", 0, "certificate lifetime (default one year)")
	return cmd
}
