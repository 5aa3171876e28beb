package e2e

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// privateRegistry is an in-memory OCI registry (go-containerregistry's
// pkg/registry) behind HTTP basic authentication on 127.0.0.1: every request,
// the /v2/ ping included, needs the one user's password, as a private
// registry's would. It counts manifest HEADs, authorized or not, so tests see
// that trustgate really asked it with the credentials.
type privateRegistry struct {
	srv      *httptest.Server
	user     string
	password string

	authorizedHeads   atomic.Int64
	unauthorizedHeads atomic.Int64
}

func startPrivateRegistry(t *testing.T) *privateRegistry {
	t.Helper()
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		t.Fatal(err)
	}
	r := &privateRegistry{user: "e2e-puller", password: hex.EncodeToString(pw)}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		authorized := ok && subtle.ConstantTimeCompare([]byte(user), []byte(r.user)) == 1 &&
			subtle.ConstantTimeCompare([]byte(pass), []byte(r.password)) == 1
		if req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/manifests/") {
			if authorized {
				r.authorizedHeads.Add(1)
			} else {
				r.unauthorizedHeads.Add(1)
			}
		}
		if !authorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="trustgate-e2e"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// Host is 127.0.0.1:PORT; go-containerregistry speaks plain HTTP to loopback.
func (r *privateRegistry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// push pushes a small random image to path:tag with the registry's
// credentials and returns it with the digest the registry serves for the tag.
func (r *privateRegistry) push(t *testing.T, path, tag string) image {
	t.Helper()
	ref, err := name.NewTag(r.Host()+"/"+path+":"+tag, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	auth := remote.WithAuth(&authn.Basic{Username: r.user, Password: r.password})
	if err := remote.Write(ref, img, remote.WithContext(ctx), auth); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	desc, err := remote.Head(ref, remote.WithContext(ctx), auth)
	if err != nil {
		t.Fatalf("head %s: %v", ref, err)
	}
	r.authorizedHeads.Store(0)
	return image{Ref: ref.String(), Digest: desc.Digest.String()}
}

// trustgateSA is the identity the manifests give trustgate.
const trustgateSA = "system:serviceaccount:trustgate:trustgate"

// applyPullSecretsRBAC applies, for real, the Namespace, ServiceAccount and
// RBAC objects of deploy/overlays/image-pull-secrets (the component on top of
// the base), never its webhooks or Deployment, and checks that the component
// also turns on what trustgate needs besides RBAC: the --pull-secrets flag and
// a mounted ServiceAccount token.
func applyPullSecretsRBAC(t *testing.T, c *kube.Cluster) {
	t.Helper()
	built := kustomize(t, c, filepath.Join(deployDir(t), "overlays", "image-pull-secrets"))
	var apply []string
	for _, doc := range splitYAML(built) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			apply = append(apply, string(doc))
		case "Deployment":
			var dep appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &dep); err != nil {
				t.Fatal(err)
			}
			spec := dep.Spec.Template.Spec
			if len(spec.Containers) != 1 || !slices.Contains(spec.Containers[0].Args, "--pull-secrets") {
				t.Errorf("component's Deployment does not run trustgate with --pull-secrets: %+v", spec.Containers)
			}
			if spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
				t.Error("component's Deployment does not mount the ServiceAccount token")
			}
		}
		if meta.Kind == "ServiceAccount" {
			var sa corev1.ServiceAccount
			if err := yaml.UnmarshalStrict(doc, &sa); err != nil {
				t.Fatal(err)
			}
			if sa.AutomountServiceAccountToken == nil || !*sa.AutomountServiceAccountToken {
				t.Error("component's ServiceAccount does not allow its token to be mounted")
			}
		}
	}
	if _, _, err := c.KubectlInput(context.Background(), strings.NewReader(strings.Join(apply, "\n---\n")), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// trustgate's ServiceAccount with a token from the TokenRequest API, so
// trustgate reads pull secrets with exactly the permissions the component
// grants, as it would in the cluster.
func serviceAccountKubeconfig(t *testing.T, c *kube.Cluster) string {
	t.Helper()
	token, _, err := c.Kubectl("-n", "trustgate", "create", "token", "trustgate", "--duration=1h")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(c.KubeconfigYAML()), "token: "+c.Token, "token: "+strings.TrimSpace(token), 1)
	if !strings.Contains(cfg, strings.TrimSpace(token)) {
		t.Fatal("could not put the ServiceAccount token into the kubeconfig")
	}
	path := filepath.Join(t.TempDir(), "trustgate.kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPullSecretsRBAC: the component grants trustgate get, and only get, on
// secrets and serviceaccounts, in every namespace; nothing else.
func TestPullSecretsRBAC(t *testing.T) {
	c := requireCluster(t)
	applyPullSecretsRBAC(t, c)
	ns := newNamespace(t, c, "e2e-rbac", "")
	allowed := map[string]bool{"get secrets": true, "get serviceaccounts": true}
	for _, res := range []string{"secrets", "serviceaccounts", "configmaps", "pods"} {
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
			stdout, stderr, _ := c.Kubectl("auth", "can-i", verb, res, "-n", ns, "--as="+trustgateSA)
			got := strings.TrimSpace(stdout)
			if got != "yes" && got != "no" {
				t.Fatalf("kubectl auth can-i %s %s: stdout %q stderr %q", verb, res, stdout, stderr)
			}
			if want := allowed[verb+" "+res]; (got == "yes") != want {
				t.Errorf("can %s %s %s in %s: %s, want %v", trustgateSA, verb, res, ns, got, want)
			}
		}
	}
}

// TestPullSecrets: with --pull-secrets, trustgate pins images of an
// `action: allow` rule from a registry that needs a password, using the pod's
// imagePullSecrets or its ServiceAccount's, read from the API server as
// trustgate's own ServiceAccount with the component's RBAC.
func TestPullSecrets(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	reg := startPrivateRegistry(t)
	app := reg.push(t, "private/app", "v1")

	applyPullSecretsRBAC(t, c)
	kubeconfig := serviceAccountKubeconfig(t, c)
	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
rules:
- name: private
  images: ["%s/private/**"]
  action: allow
  pinDigest: true
`, reg.Host())
	s, err := startStack(t, c, d, bin, stackSpec{
		name: "pullsecrets", policy: policy, selector: ownNamespaces("pullsecrets"),
		serveArgs: []string{"--pull-secrets", "--kubeconfig", kubeconfig},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-pullsecrets")
	waitJudged(t, c, ns, "registry.unmatched.example/app:v1", deniedResult)

	if _, _, err := c.Kubectl("-n", ns, "create", "secret", "docker-registry", "regcred",
		"--docker-server="+reg.Host(), "--docker-username="+reg.user, "--docker-password="+reg.password); err != nil {
		t.Fatal(err)
	}
	podYAML := func(name, spec string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: %s\n%s", name, app.Ref, spec)
	}

	t.Run("pod imagePullSecrets", func(t *testing.T) {
		before := reg.authorizedHeads.Load()
		if _, _, err := applyStdin(s, ns, podYAML("with-secret", "  imagePullSecrets: [{name: regcred}]\n")); err != nil {
			t.Fatalf("pod with the pull secret refused: %v", err)
		}
		if got := s.get(t, ns, "pod/with-secret", "{.spec.containers[0].image}"); got != app.Pinned() {
			t.Errorf("stored image = %q, want %q", got, app.Pinned())
		}
		if reg.authorizedHeads.Load() == before {
			t.Error("the registry saw no authenticated HEAD of the manifest")
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		before := reg.unauthorizedHeads.Load()
		_, stderr, err := runPod(s, ns, "without-secret", app.Ref)
		if err == nil {
			t.Fatal("pod admitted although its image's digest could not be resolved")
		}
		t.Logf("refused: %s", strings.TrimSpace(stderr))
		for _, want := range []string{"denied the request", app.Ref, "could not be resolved", "401"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if reg.unauthorizedHeads.Load() == before {
			t.Error("the registry saw no HEAD without credentials: the refusal is not the registry's 401")
		}
	})

	if _, _, err := c.Kubectl("-n", ns, "create", "serviceaccount", "puller"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Kubectl("-n", ns, "patch", "serviceaccount", "puller", "-p", `{"imagePullSecrets":[{"name":"regcred"}]}`); err != nil {
		t.Fatal(err)
	}
	t.Run("ServiceAccount imagePullSecrets, pod", func(t *testing.T) {
		if _, _, err := applyStdin(s, ns, podYAML("with-sa", "  serviceAccountName: puller\n")); err != nil {
			t.Fatalf("pod of a ServiceAccount with the pull secret refused: %v", err)
		}
		if got := s.get(t, ns, "pod/with-sa", "{.spec.containers[0].image}"); got != app.Pinned() {
			t.Errorf("stored image = %q, want %q", got, app.Pinned())
		}
		// The API server's ServiceAccount admission plugin copies the
		// account's pull secrets into a pod that names none, before any
		// webhook runs; the Deployment below is where trustgate must read
		// the ServiceAccount itself.
		t.Logf("stored imagePullSecrets: %q", s.get(t, ns, "pod/with-sa", "{.spec.imagePullSecrets[*].name}"))
	})
	t.Run("ServiceAccount imagePullSecrets, deployment template", func(t *testing.T) {
		doc := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: with-sa
spec:
  selector:
    matchLabels: {app: with-sa}
  template:
    metadata:
      labels: {app: with-sa}
    spec:
      serviceAccountName: puller
      containers:
      - name: app
        image: %s
`, app.Ref)
		if _, _, err := applyStdin(s, ns, doc); err != nil {
			t.Fatalf("deployment of a ServiceAccount with the pull secret refused: %v", err)
		}
		if got := s.get(t, ns, "deployment/with-sa", "{.spec.template.spec.containers[0].image} {.spec.template.spec.imagePullSecrets}"); got != app.Pinned()+" " {
			t.Errorf("stored image and template imagePullSecrets = %q, want %q and none", got, app.Pinned())
		}
	})
}
