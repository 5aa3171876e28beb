// Package pullsecrets reads a pod's pull credentials (its imagePullSecrets
// and those of its service account) from the Kubernetes API, so trustgate can
// resolve digests from private registries with exactly the credentials the
// kubelet would use. It is the only package that talks to the API server.
package pullsecrets

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trustgate-dev/trustgate/internal/resolve"
)

// NewClient connects with kubeconfig, or with the in-cluster service account
// when kubeconfig is empty.
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	// Reads happen on the admission path: keep them short and few.
	cfg.QPS, cfg.Burst = 50, 100
	return kubernetes.NewForConfig(cfg)
}

// Keychain returns the pod credentials source for resolve.WithPodKeychain.
// Secrets that do not exist are ignored, as the kubelet ignores them.
func Keychain(client kubernetes.Interface) resolve.PodKeychain {
	return func(ctx context.Context, a resolve.Auth) (authn.Keychain, error) {
		kc, err := kauth.New(ctx, client, kauth.Options{
			Namespace:          a.Namespace,
			ServiceAccountName: a.ServiceAccount,
			ImagePullSecrets:   a.PullSecrets,
		})
		if err != nil {
			return nil, fmt.Errorf("read pull secrets of %s: %w", a.Namespace, err)
		}
		return kc, nil
	}
}
