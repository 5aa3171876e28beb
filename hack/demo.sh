#!/usr/bin/env bash
# make demo: the local sandbox. Real notary-server, docker-registry, etcd and
# kube-apiserver on 127.0.0.1, the deploy/base manifests applied to it, and
# trustgate serving its webhooks; then kubectl admits a signed image (stored
# pinned to its digest) and refuses an unsigned one with trustgate's reason.
# Dogfood: trustgate's own image (hack/imagebuild, what `make image` runs) is
# pushed to the sandbox registry, signed with the notary CLI as `docker trust
# sign` does, and deploy/base is applied with it by digest into a judged
# namespace: trustgate admits its own signed image.
#
#   hack/demo.sh          start (stops a previous sandbox first)
#   hack/demo.sh stop     stop everything it started
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sb="$root/.sandbox"
bin="$root/bin/trustgate"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop() {
	if [[ -f "$sb/pids" ]]; then
		# trustgate first, then the cluster (API server before etcd is its own
		# business), then the notary server and registry.
		while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done < <(tac "$sb/pids")
		for _ in $(seq 50); do
			alive=0
			while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$sb/pids"
			((alive)) || break
			sleep 0.2
		done
		rm -f "$sb/pids"
	fi
}

if [[ "${1:-}" == "stop" ]]; then
	stop
	echo "sandbox stopped"
	exit 0
fi

for b in notary-server notary docker-registry etcd kubectl; do
	command -v "$b" >/dev/null || { echo "demo: $b is missing: run hack/setup.sh (make demo does), which installs it" >&2; exit 2; }
done
[[ -x "$bin" ]] || { echo "demo: $bin is missing: run 'make demo' (it builds it)" >&2; exit 2; }
stop
rm -rf "$sb"
mkdir -p "$sb"
trap 'echo "demo failed; logs are in $sb; stop with: hack/demo.sh stop" >&2' ERR

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
wait_file() { # file, seconds, what
	for _ in $(seq "$(($2 * 5))"); do [[ -s "$1" ]] && return 0; sleep 0.2; done
	echo "demo: $3 did not come up in $2 s; see $sb/*.log" >&2
	return 1
}

say "Starting a notary server and a registry; signing one image, leaving one unsigned"
(cd "$root" && go build -o "$sb/dctsandbox" ./test/harness/dct/cmd/dctsandbox && go build -o "$sb/kubesandbox" ./test/harness/kube/cmd/kubesandbox)
"$sb/dctsandbox" -out "$sb/dct.json" -dir "$sb/dct" >"$sb/dct.log" 2>&1 &
echo $! >>"$sb/pids"
say "Starting etcd and kube-apiserver (the first run builds kube-apiserver once: about 10 minutes)"
"$sb/kubesandbox" -kubeconfig "$sb/kubeconfig" -namespaces demo >"$sb/kube.log" 2>&1 &
echo $! >>"$sb/pids"
wait_file "$sb/dct.json" 60 "the notary server and registry"
tail -f "$sb/kube.log" 2>/dev/null | grep --line-buffered -i "build" &
tailpid=$!
wait_file "$sb/kubeconfig" 1800 "the API server"
kill "$tailpid" 2>/dev/null || true

field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$sb/dct.json" | sed -n "${2:-1}p"; }
notary_url="$(field notaryURL)"
ca_file="$(field caFile)"
registry="$(field registry)"
signed="$(field ref 1)"
unsigned="$(field ref 2)"
signed_digest="$(field digest 1)"
root_key="$(field rootKeyFile 1)"

say "Building trustgate's own image (make image) and pushing it to $registry/trustgate/trustgate"
self_repo="$registry/trustgate/trustgate"
self_ref="$(cd "$root" && SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
	go run ./hack/imagebuild -repo "$self_repo:demo" -version "$("$bin" version | awk '{print $2}')" 2>"$sb/imagebuild.log" | tail -1)"
self_digest="${self_ref##*@}"
[[ "$self_digest" == sha256:* ]] || { echo "demo: image build failed; see $sb/imagebuild.log" >&2; exit 1; }
# DCT signs the manifest's digest and length as the registry serves it.
self_size="$(curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json' \
	"http://$registry/v2/trustgate/trustgate/manifests/$self_digest" | wc -c)"
echo "$self_repo@$self_digest ($self_size bytes, linux/amd64 + linux/arm64, SBOM attached)"

say "Signing it with the notary CLI (init, snapshot key to the server, addhash, publish: docker trust sign)"
mkdir -p "$sb/self-signer"
notary_cli() {
	HOME="$sb/self-signer" NOTARY_ROOT_PASSPHRASE=sandbox-only NOTARY_TARGETS_PASSPHRASE=sandbox-only \
		NOTARY_SNAPSHOT_PASSPHRASE=sandbox-only \
		notary -s "$notary_url" -d "$sb/self-signer/trust" --tlscacert "$ca_file" "$@" >>"$sb/self-signer.log" 2>&1
}
notary_cli init "$self_repo"
notary_cli publish "$self_repo"
notary_cli key rotate "$self_repo" snapshot -r
notary_cli addhash "$self_repo" demo "$self_size" --sha256 "${self_digest#sha256:}"
notary_cli publish "$self_repo"
"$bin" dct root-key "$self_repo" --server "$notary_url" --ca "$ca_file" >"$sb/self-root.pem"

say "Writing the policy: images of $registry/demo/* and trustgate's own must be signed (DCT), pinned root keys"
cat >"$sb/policy.yaml" <<POLICY
apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
exemptNamespaces: [kube-system, trustgate]
verifiers:
  - name: demo-dct
    type: notaryv1
    notaryv1:
      server: $notary_url
      caFile: $ca_file
      rootKeys: [$root_key]
  - name: trustgate-release
    type: notaryv1
    notaryv1:
      server: $notary_url
      caFile: $ca_file
      rootKeys: [$sb/self-root.pem]
rules:
  - name: demo
    images: ["$registry/demo/*"]
    verify: [demo-dct]
  - name: trustgate-itself
    images: ["$self_repo"]
    verify: [trustgate-release]
POLICY
cat "$sb/policy.yaml"

say "Starting trustgate with a certificate from 'trustgate certs'"
port="$(free_port)"
"$bin" certs --service trustgate --namespace trustgate --ip 127.0.0.1 --out "$sb/certs" >/dev/null
"$bin" serve --policy "$sb/policy.yaml" --addr "127.0.0.1:$port" \
	--tls-cert "$sb/certs/tls.crt" --tls-key "$sb/certs/tls.key" >"$sb/trustgate.log" 2>&1 &
echo $! >>"$sb/pids"
for _ in $(seq 50); do curl -fsS --cacert "$sb/certs/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

say "Applying deploy/base with the webhooks pointed at this trustgate (url + caBundle instead of the Service)"
mkdir -p "$sb/overlay"
ca_bundle="$(base64 -w0 <"$sb/certs/ca.crt")"
hook_patch() { # path
	cat <<PATCH
- op: remove
  path: /webhooks/0/clientConfig/service
- op: add
  path: /webhooks/0/clientConfig/url
  value: https://127.0.0.1:$port$1
- op: add
  path: /webhooks/0/clientConfig/caBundle
  value: $ca_bundle
PATCH
}
hook_patch /mutate >"$sb/overlay/mutate.yaml"
hook_patch /validate >"$sb/overlay/validate.yaml"
cat >"$sb/overlay/kustomization.yaml" <<KUST
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$sb/overlay" "$root/deploy/base")
patches:
- path: mutate.yaml
  target: {kind: MutatingWebhookConfiguration, name: trustgate}
- path: validate.yaml
  target: {kind: ValidatingWebhookConfiguration, name: trustgate}
KUST
export KUBECONFIG="$sb/kubeconfig"
kubectl apply -k "$sb/overlay"
# The API server picks up webhook configurations asynchronously.
for _ in $(seq 50); do
	kubectl -n demo run probe --image="$unsigned" --dry-run=server >/dev/null 2>&1 || break
	sleep 0.2
done

say "kubectl run signed --image=$signed"
kubectl -n demo run signed --image="$signed"
echo "stored image: $(kubectl -n demo get pod signed -o jsonpath='{.spec.containers[0].image}')"
echo "signed digest: $signed_digest"

say "kubectl run unsigned --image=$unsigned   (refused)"
if kubectl -n demo run unsigned --image="$unsigned"; then
	echo "demo: the unsigned image was admitted: that is a bug" >&2
	exit 1
fi

say "Dogfood: deploy/base with trustgate's image by digest, applied in namespace demo (judged)"
# Only the namespaced objects: the cluster-wide ones (namespace trustgate, the
# webhook configurations) are already applied above.
mkdir -p "$sb/self"
cat >"$sb/self/kustomization.yaml" <<KUST
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: demo
resources:
- $(realpath --relative-to="$sb/self" "$root/deploy/base")
images:
- name: ghcr.io/trustgate-dev/trustgate
  newName: $self_repo
  digest: $self_digest
KUST
kubectl kustomize "$sb/self" |
	awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: (Deployment|ConfigMap|ServiceAccount|Service|PodDisruptionBudget)\n/ { printf "---\n%s\n", $0 }' |
	kubectl -n demo apply -f -
echo "stored image: $(kubectl -n demo get deployment trustgate -o jsonpath='{.spec.template.spec.containers[0].image}')"

trap - ERR
say "The sandbox is running"
cat <<DONE
  export KUBECONFIG=$sb/kubeconfig
  kubectl -n demo get pods
  kubectl -n demo create deployment web --image=$signed     # pinned on the template
  bin/trustgate verify --policy $sb/policy.yaml $signed $unsigned
  logs: $sb/trustgate.log (one JSON line per decision), metrics: curl --cacert $sb/certs/ca.crt https://127.0.0.1:$port/metrics
Stop it with:  hack/demo.sh stop
DONE
