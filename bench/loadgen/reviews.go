// Package loadgen drives an admission webhook with real AdmissionReview v1
// bodies over HTTPS, open loop at a fixed rate or closed loop at saturation,
// and measures latency, answers and the target process's CPU and memory.
// It is the engine of `go run ./bench/load` and of the scenario harness.
package loadgen

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Kind names an AdmissionReview body shape.
type Kind string

// The body shapes the load tool sends.
const (
	// KindPod is a typical Pod of about 3 KB: one init container, an app and
	// a sidecar, labels, annotations, probes, env and volumes.
	KindPod Kind = "pod"
	// KindDeployment is a Deployment whose template is the typical Pod.
	KindDeployment Kind = "deployment"
	// KindBigPod is a Pod with 30 containers.
	KindBigPod Kind = "bigpod"
)

// Kinds lists the known body shapes.
var Kinds = []Kind{KindPod, KindDeployment, KindBigPod}

// ParseKind checks a --kind value.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("kind %q: want one of pod, deployment, bigpod", s)
}

// Review renders one AdmissionReview v1 request body of kind k. Container
// n gets images[n % len(images)], so one image gives a Pod of one image
// and a list spreads a Pod's containers over several. uid must be unique
// per request, as the API server makes it.
func Review(k Kind, images []string, uid, namespace string) ([]byte, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("review body: no image")
	}
	if namespace == "" {
		namespace = "default"
	}
	var (
		obj      any
		group    string
		version  = "v1"
		kind     string
		resource string
	)
	switch k {
	case KindPod:
		obj, kind, resource = pod("web-7d4b9c8f6d-x2x9k", namespace, images, 2), "Pod", "pods"
	case KindBigPod:
		obj, kind, resource = pod("batch-5f6b8c7d9-q8w2e", namespace, images, 30), "Pod", "pods"
	case KindDeployment:
		obj, group, kind, resource = deployment("web", namespace, images), "apps", "Deployment", "deployments"
	default:
		return nil, fmt.Errorf("review body: unknown kind %q", k)
	}
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":             uid,
			"kind":            map[string]any{"group": group, "version": version, "kind": kind},
			"resource":        map[string]any{"group": group, "version": version, "resource": resource},
			"requestKind":     map[string]any{"group": group, "version": version, "kind": kind},
			"requestResource": map[string]any{"group": group, "version": version, "resource": resource},
			"name":            objName(obj),
			"namespace":       namespace,
			"operation":       "CREATE",
			"userInfo":        userInfo(k),
			"object":          obj,
			"oldObject":       nil,
			"dryRun":          false,
			"options":         map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
		},
	}
	b, err := json.Marshal(review)
	if err != nil {
		return nil, fmt.Errorf("review body: %w", err)
	}
	return b, nil
}

func objName(obj any) string {
	return obj.(map[string]any)["metadata"].(map[string]any)["name"].(string)
}

// userInfo is who the API server says sent the request: the ReplicaSet
// controller for Pods, a human for Deployments.
func userInfo(k Kind) map[string]any {
	if k == KindDeployment {
		return map[string]any{"username": "alice@example.com", "groups": []string{"system:authenticated", "dev-team"}}
	}
	return map[string]any{
		"username": "system:serviceaccount:kube-system:replicaset-controller",
		"uid":      "8f0e6f4a-3c2b-4e55-9a1d-1d2c3b4a5f60",
		"groups":   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
	}
}

func pod(name, ns string, images []string, containers int) map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name":              name,
			"generateName":      strings.TrimSuffix(name, name[strings.LastIndexByte(name, '-')+1:]),
			"namespace":         ns,
			"uid":               "3b1f6f7e-9d1c-4b8a-8a47-5c2e9d0f1a23",
			"creationTimestamp": "2026-11-29T10:00:00Z",
			"labels": map[string]any{
				"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7d4b9c8f6d",
			},
			"annotations": map[string]any{
				"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
				"kubectl.kubernetes.io/restartedAt": "2026-11-28T17:02:11Z",
			},
			"ownerReferences": []any{map[string]any{
				"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
				"uid": "0d8c6b1e-2f4a-4c9b-9e7d-6a5b4c3d2e1f", "controller": true, "blockOwnerDeletion": true,
			}},
		},
		"spec": podSpec(images, containers),
	}
}

func deployment(name, ns string, images []string) map[string]any {
	tmpl := pod(name, ns, images, 2)
	meta := tmpl["metadata"].(map[string]any)
	delete(meta, "ownerReferences")
	delete(meta, "uid")
	delete(meta, "name")
	delete(meta, "generateName")
	delete(meta, "namespace")
	return map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name": name, "namespace": ns, "generation": 1,
			"labels":      map[string]any{"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop"},
			"annotations": map[string]any{"deployment.kubernetes.io/revision": "1"},
		},
		"spec": map[string]any{
			"replicas":             3,
			"revisionHistoryLimit": 10,
			"selector":             map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "web"}},
			"strategy": map[string]any{"type": "RollingUpdate",
				"rollingUpdate": map[string]any{"maxSurge": "25%", "maxUnavailable": "25%"}},
			"template": map[string]any{"metadata": meta, "spec": tmpl["spec"]},
		},
	}
}

// podSpec has one init container plus `containers` containers.
func podSpec(images []string, containers int) map[string]any {
	img := func(n int) string { return images[n%len(images)] }
	cs := make([]any, 0, containers)
	for n := range containers {
		name := "app"
		if n > 0 {
			name = fmt.Sprintf("sidecar-%d", n)
		}
		c := container(name, img(n+1))
		if n > 0 {
			// Sidecars are leaner than the app: no probes, env or mounts.
			for _, k := range []string{"readinessProbe", "livenessProbe", "env", "volumeMounts", "ports"} {
				delete(c, k)
			}
		}
		cs = append(cs, c)
	}
	return map[string]any{
		"initContainers": []any{map[string]any{
			"name": "migrate", "image": img(0), "command": []string{"/bin/migrate", "--wait"},
			"resources":                map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "32Mi"}},
			"terminationMessagePath":   "/dev/termination-log",
			"terminationMessagePolicy": "File",
			"imagePullPolicy":          "IfNotPresent",
		}},
		"containers":                    cs,
		"restartPolicy":                 "Always",
		"terminationGracePeriodSeconds": 30,
		"dnsPolicy":                     "ClusterFirst",
		"serviceAccountName":            "web",
		"nodeName":                      "",
		"securityContext":               map[string]any{"runAsNonRoot": true, "fsGroup": 2000},
		"imagePullSecrets":              []any{map[string]any{"name": "registry-pull"}},
		"schedulerName":                 "default-scheduler",
		"tolerations": []any{
			map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
			map[string]any{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
		},
		"volumes": []any{
			map[string]any{"name": "config", "configMap": map[string]any{"name": "web-config", "defaultMode": 420}},
		},
		"enableServiceLinks": true,
		"preemptionPolicy":   "PreemptLowerPriority",
		"priority":           0,
	}
}

func container(name, image string) map[string]any {
	return map[string]any{
		"name":  name,
		"image": image,
		"args":  []string{"--listen=:8080", "--metrics=:9090", "--log-format=json"},
		"ports": []any{
			map[string]any{"name": "http", "containerPort": 8080, "protocol": "TCP"},
			map[string]any{"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
		},
		"env": []any{
			map[string]any{"name": "LOG_LEVEL", "value": "info"},
			map[string]any{"name": "POD_NAME", "valueFrom": map[string]any{"fieldRef": map[string]any{"apiVersion": "v1", "fieldPath": "metadata.name"}}},
		},
		"resources": map[string]any{
			"limits":   map[string]any{"cpu": "1", "memory": "256Mi"},
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
		},
		"volumeMounts": []any{
			map[string]any{"name": "config", "mountPath": "/etc/web", "readOnly": true},
		},
		"readinessProbe": map[string]any{
			"httpGet":       map[string]any{"path": "/readyz", "port": 8080, "scheme": "HTTP"},
			"periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
		},
		"securityContext": map[string]any{
			"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
			"capabilities": map[string]any{"drop": []string{"ALL"}},
		},
		"terminationMessagePath":   "/dev/termination-log",
		"terminationMessagePolicy": "File",
		"imagePullPolicy":          "IfNotPresent",
	}
}

// Prepare renders the bodies of a run. With perRequest, body i carries
// only images[i] (a new image per request: len(images) bodies); otherwise
// n bodies (default 64) each carry all of images. Every body has its own
// uid, which the answer must echo.
func Prepare(k Kind, images []string, perRequest bool, n int, namespace string) ([]Body, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("prepare bodies: no image")
	}
	if perRequest {
		n = len(images)
	} else if n <= 0 {
		n = 64
	}
	out := make([]Body, 0, n)
	for i := range n {
		imgs := images
		if perRequest {
			imgs = images[i : i+1]
		}
		uid := fmt.Sprintf("0b5e7c1d-%04x-4000-8000-%012x", i>>48&0xffff, i&0xffffffffffff)
		data, err := Review(k, imgs, uid, namespace)
		if err != nil {
			return nil, err
		}
		out = append(out, Body{Data: data, UID: uid})
	}
	return out, nil
}
