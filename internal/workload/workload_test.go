package workload

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// podSpecJSON has one container of every kind, plus one with no image, and
// image volumes among other volumes (one image volume without a reference).
const podSpecJSON = `{
  "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}],
  "initContainers": [{"name": "init", "image": "alpine:3"}, {"name": "noimage"}],
  "ephemeralContainers": [{"name": "debug", "image": "ghcr.io/x/debug@sha256:` + digest + `", "targetContainerName": "app"}],
  "volumes": [
    {"name": "scratch", "emptyDir": {}},
    {"name": "code", "image": {"reference": "registry.example/scripts:2", "pullPolicy": "IfNotPresent"}},
    {"name": "later", "image": {}},
    {"name": "model", "image": {"reference": "registry.example/model@sha256:` + digest + `"}}
  ]
}`

const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func wantContainers(prefix string) []Container {
	return []Container{
		{Image: "nginx:1.27", Path: prefix + "/containers/0/image", Kind: KindContainer, Name: "app"},
		{Image: "busybox", Path: prefix + "/containers/1/image", Kind: KindContainer, Name: "side"},
		{Image: "alpine:3", Path: prefix + "/initContainers/0/image", Kind: KindInitContainer, Name: "init"},
		{Image: "ghcr.io/x/debug@sha256:" + digest, Path: prefix + "/ephemeralContainers/0/image", Kind: KindEphemeralContainer, Name: "debug"},
		{Image: "registry.example/scripts:2", Path: prefix + "/volumes/1/image/reference", Kind: KindImageVolume, Name: "code"},
		{Image: "registry.example/model@sha256:" + digest, Path: prefix + "/volumes/3/image/reference", Kind: KindImageVolume, Name: "model"},
	}
}

// wrap builds an object whose pod spec sits at path.
func wrap(apiVersion, kind string, path []string) []byte {
	var spec any
	if err := json.Unmarshal([]byte(podSpecJSON), &spec); err != nil {
		panic(err)
	}
	for i := len(path) - 1; i >= 0; i-- {
		spec = map[string]any{path[i]: spec}
	}
	obj := spec.(map[string]any)
	obj["apiVersion"] = apiVersion
	obj["kind"] = kind
	obj["metadata"] = map[string]any{
		"name": "web", "namespace": "prod",
		"annotations":       map[string]string{"a": "b"},
		"deletionTimestamp": "2026-11-29T10:00:00Z",
		"ownerReferences":   []map[string]any{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1"}},
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return b
}

func TestExtractEveryKind(t *testing.T) {
	tests := []struct {
		apiVersion, kind string
		path             []string
	}{
		{"v1", "Pod", []string{"spec"}},
		{"v1", "ReplicationController", []string{"spec", "template", "spec"}},
		{"apps/v1", "Deployment", []string{"spec", "template", "spec"}},
		{"apps/v1", "ReplicaSet", []string{"spec", "template", "spec"}},
		{"apps/v1", "StatefulSet", []string{"spec", "template", "spec"}},
		{"apps/v1", "DaemonSet", []string{"spec", "template", "spec"}},
		{"batch/v1", "Job", []string{"spec", "template", "spec"}},
		{"batch/v1", "CronJob", []string{"spec", "jobTemplate", "spec", "template", "spec"}},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			gv, _ := schema.ParseGroupVersion(tc.apiVersion)
			gk := gv.WithKind(tc.kind).GroupKind()
			obj, err := Extract(gk, "", wrap(tc.apiVersion, tc.kind, tc.path))
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if obj == nil {
				t.Fatal("Extract returned nil for a judged kind")
			}
			want := wantContainers("/" + strings.Join(tc.path, "/"))
			if !reflect.DeepEqual(obj.Containers, want) {
				t.Errorf("Containers:\n got %+v\nwant %+v", obj.Containers, want)
			}
			if obj.Name != "web" || obj.Namespace != "prod" || obj.Annotations["a"] != "b" || obj.Kind != gk {
				t.Errorf("metadata: got name=%q ns=%q ann=%v kind=%v", obj.Name, obj.Namespace, obj.Annotations, obj.Kind)
			}
			if !obj.Deleting() {
				t.Error("Deleting() = false, want true (deletionTimestamp set)")
			}
			if len(obj.OwnerReferences) != 1 || obj.OwnerReferences[0].Name != "web-1" {
				t.Errorf("OwnerReferences = %+v", obj.OwnerReferences)
			}
		})
	}
}

func TestExtractSubresources(t *testing.T) {
	pod := wrap("v1", "Pod", []string{"spec"})
	tests := []struct {
		name        string
		gk          schema.GroupKind
		subresource string
		wantJudged  bool
	}{
		{"pod", schema.GroupKind{Kind: "Pod"}, "", true},
		{"pod ephemeralcontainers", schema.GroupKind{Kind: "Pod"}, "ephemeralcontainers", true},
		{"pod status", schema.GroupKind{Kind: "Pod"}, "status", false},
		{"deployment ephemeralcontainers is not a thing", schema.GroupKind{Group: "apps", Kind: "Deployment"}, "ephemeralcontainers", false},
		{"deployment scale", schema.GroupKind{Group: "apps", Kind: "Deployment"}, "scale", false},
		{"configmap", schema.GroupKind{Kind: "ConfigMap"}, "", false},
		{"kind alone is not enough: Deployment in another group", schema.GroupKind{Group: "example.com", Kind: "Deployment"}, "", false},
		{"Pod in apps group", schema.GroupKind{Group: "apps", Kind: "Pod"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Judged(tc.gk, tc.subresource); got != tc.wantJudged {
				t.Errorf("Judged = %v, want %v", got, tc.wantJudged)
			}
			obj, err := Extract(tc.gk, tc.subresource, pod)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if (obj != nil) != tc.wantJudged {
				t.Errorf("Extract returned object=%v, want judged=%v", obj != nil, tc.wantJudged)
			}
		})
	}
}

func TestExtractEdgeCases(t *testing.T) {
	pod := schema.GroupKind{Kind: "Pod"}
	cron := schema.GroupKind{Group: "batch", Kind: "CronJob"}
	tests := []struct {
		name    string
		gk      schema.GroupKind
		raw     string
		want    []Container
		wantErr bool
	}{
		{name: "no spec", gk: pod, raw: `{"metadata":{"name":"p"}}`},
		{name: "null template", gk: cron, raw: `{"spec":{"jobTemplate":null}}`},
		{name: "empty containers", gk: pod, raw: `{"spec":{"containers":[]}}`},
		{name: "unknown fields are ignored", gk: pod, raw: `{"spec":{"futureField":{"x":1},"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"1"}}}]}}`,
			want: []Container{{Image: "x", Path: "/spec/containers/0/image", Kind: KindContainer, Name: "a"}}},
		{name: "same image twice keeps both paths", gk: pod, raw: `{"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"x"}]}}`,
			want: []Container{
				{Image: "x", Path: "/spec/containers/0/image", Kind: KindContainer, Name: "a"},
				{Image: "x", Path: "/spec/containers/1/image", Kind: KindContainer, Name: "b"},
			}},
		{name: "image volume in a cron job template", gk: cron, raw: `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"volumes":[{"name":"v","image":{"reference":"x:1"}}]}}}}}}`,
			want: []Container{{Image: "x:1", Path: "/spec/jobTemplate/spec/template/spec/volumes/0/image/reference", Kind: KindImageVolume, Name: "v"}}},
		{name: "volumes without image are not images", gk: pod, raw: `{"spec":{"volumes":[{"name":"a","rbd":{"image":"ceph-image","monitors":["m"]}},{"name":"b","image":null}]}}`},
		{name: "not JSON", gk: pod, raw: `{`, wantErr: true},
		{name: "volume image is a string", gk: pod, raw: `{"spec":{"volumes":[{"name":"a","image":"x"}]}}`, wantErr: true},
		{name: "volume reference is a number", gk: pod, raw: `{"spec":{"volumes":[{"name":"a","image":{"reference":5}}]}}`, wantErr: true},
		{name: "empty", gk: pod, raw: ``, wantErr: true},
		{name: "array", gk: pod, raw: `[]`, wantErr: true},
		{name: "spec is a string", gk: pod, raw: `{"spec":"x"}`, wantErr: true},
		{name: "template is a number", gk: cron, raw: `{"spec":{"jobTemplate":{"spec":{"template":5}}}}`, wantErr: true},
		{name: "image is a number", gk: pod, raw: `{"spec":{"containers":[{"name":"a","image":5}]}}`, wantErr: true},
		{name: "bad metadata", gk: pod, raw: `{"metadata":{"name":5}}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Extract(tc.gk, "", []byte(tc.raw))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Extract error = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !reflect.DeepEqual(obj.Containers, tc.want) {
				t.Errorf("Containers:\n got %+v\nwant %+v", obj.Containers, tc.want)
			}
		})
	}
}

func TestImages(t *testing.T) {
	o := &Object{Containers: []Container{{Image: "b"}, {Image: "a"}, {Image: "b"}, {Image: "c"}}}
	if got, want := o.Images(), []string{"b", "a", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Images() = %v, want %v", got, want)
	}
}

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{
		"trustgate.dev/original-images": "trustgate.dev~1original-images",
		"a~b/c":                         "a~0b~1c",
		"plain":                         "plain",
	} {
		if got := EscapePointer(in); got != want {
			t.Errorf("EscapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add([]byte(wrap("batch/v1", "CronJob", []string{"spec", "jobTemplate", "spec", "template", "spec"})))
	f.Add([]byte(`{"spec":{"jobTemplate":null}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for gk := range kinds {
			obj, err := Extract(gk, "", raw)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v does not match ErrMalformed", err)
				}
				continue
			}
			var generic any
			if len(obj.Containers) > 0 {
				if err := json.Unmarshal(raw, &generic); err != nil {
					t.Fatalf("Extract accepted what encoding/json rejects: %v", err)
				}
			}
			for _, c := range obj.Containers {
				// The pointer must lead to exactly this image: it is what
				// the mutating webhook will replace.
				if c.Image == "" || lookupPointer(generic, c.Path) != c.Image {
					t.Fatalf("container %+v: pointer leads to %v", c, lookupPointer(generic, c.Path))
				}
			}
		}
	})
}

func TestExtractDecodesLikeTheAPIServer(t *testing.T) {
	pod := schema.GroupKind{Kind: "Pod"}
	t.Run("field names are case-sensitive", func(t *testing.T) {
		obj, err := Extract(pod, "", []byte(`{"spec":{"containers":[{"name":"a","Image":"hidden"}],"Containers":[{"name":"b","image":"x"}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Containers) != 0 {
			t.Errorf("containers = %+v, want none (Kubernetes ignores these spellings)", obj.Containers)
		}
	})
	t.Run("image volume field names are case-sensitive", func(t *testing.T) {
		obj, err := Extract(pod, "", []byte(`{"spec":{"volumes":[{"name":"a","image":{"Reference":"hidden"}},{"name":"b","Image":{"reference":"hidden"}}],"Volumes":[{"name":"c","image":{"reference":"x"}}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Containers) != 0 {
			t.Errorf("containers = %+v, want none (Kubernetes ignores these spellings)", obj.Containers)
		}
	})
	for name, raw := range map[string]string{
		"reference":   `{"spec":{"volumes":[{"name":"a","image":{"reference":"signed","reference":"unsigned"}}]}}`,
		"image":       `{"spec":{"volumes":[{"name":"a","image":{"reference":"signed"},"image":{"reference":"unsigned"}}]}}`,
		"volumes":     `{"spec":{"volumes":[],"volumes":[{"name":"a","image":{"reference":"unsigned"}}]}}`,
		"volume name": `{"spec":{"volumes":[{"name":"a","name":"b","image":{"reference":"x"}}]}}`,
	} {
		t.Run("duplicate "+name+" field is refused", func(t *testing.T) {
			_, err := Extract(pod, "", []byte(raw))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "duplicate") {
				t.Errorf("error = %v, want ErrMalformed naming the duplicate", err)
			}
		})
	}
	t.Run("duplicate image field is refused", func(t *testing.T) {
		_, err := Extract(pod, "", []byte(`{"spec":{"containers":[{"name":"a","image":"signed","image":"unsigned"}]}}`))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "duplicate") {
			t.Errorf("error = %v, want ErrMalformed naming the duplicate", err)
		}
	})
}

func BenchmarkExtract(b *testing.B) {
	raw := wrap("apps/v1", "Deployment", []string{"spec", "template", "spec"})
	gk := schema.GroupKind{Group: "apps", Kind: "Deployment"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract(gk, "", raw); err != nil {
			b.Fatal(err)
		}
	}
}

// lookupPointer resolves an RFC 6901 pointer in decoded JSON (nil if absent).
func lookupPointer(v any, p string) any {
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch x := v.(type) {
		case map[string]any:
			v = x[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}
