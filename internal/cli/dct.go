package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
)

func newDCTCmd() *cobra.Command {
	dct := &cobra.Command{Use: "dct", Short: "Docker Content Trust (Notary v1) helpers"}
	var server, ca string
	rootKey := &cobra.Command{
		Use:   "root-key GUN --server URL",
		Short: "Print the root public key(s) of a repository, to pin in a policy",
		Long: `Print the root public key(s) PEM of a repository's trust data, for a notaryv1
verifier's rootKeys. The key is fetched from the server, so it is only as trustworthy
as that fetch: compare its key ID with the one the signing team publishes (for example
'docker trust inspect' on a machine that signed) before you pin it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				return usageErr("--server is required")
			}
			gun := args[0]
			// Accept an image reference too: the GUN is its repository.
			if ref, err := imageref.Parse(gun); err == nil {
				gun = ref.GUN()
			}
			pems, err := notaryv1.FetchRootKeys(cmd.Context(), server, gun, ca)
			if err != nil {
				return &exitError{code: ExitDenied, err: fmt.Errorf("fetch root keys of %s: %w", gun, err)}
			}
			fmt.Fprint(cmd.OutOrStdout(), strings.Join(pems, ""))
			return nil
		},
	}
	rootKey.Flags().StringVar(&server, "server", "", "notary server base URL, e.g. https://myregistry.azurecr.io")
	rootKey.Flags().StringVar(&ca, "ca", "", "extra CA file for the server's TLS")
	dct.AddCommand(rootKey)
	return dct
}
