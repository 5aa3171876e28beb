package workload

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fieldsCases are objects decoded both ways, for every judged kind.
var fieldsCases = []struct {
	name string
	raw  string
	// fieldsFail: Fields refuses the object (it declares every location)
	// although the kind-specific decode of some kinds accepts it.
	fieldsFail bool
}{
	{name: "pod spec", raw: string(wrap("v1", "Pod", []string{"spec"}))},
	{name: "template", raw: string(wrap("apps/v1", "Deployment", []string{"spec", "template", "spec"}))},
	{name: "job template", raw: string(wrap("batch/v1", "CronJob", []string{"spec", "jobTemplate", "spec", "template", "spec"}))},
	{name: "every location at once", raw: `{"spec":{"containers":[{"name":"a","image":"pod"}],"template":{"spec":{"containers":[{"name":"b","image":"tmpl"}]}},"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"name":"c","image":"cron"}],"serviceAccountName":"sa","imagePullSecrets":[{"name":"s"}]}}}}}}`},
	{name: "object kind field disagrees", raw: `{"kind":"Pod","spec":{"template":{"spec":{"containers":[{"name":"b","image":"hidden-from-a-pod-reader"}]}}}}`},
	{name: "no spec", raw: `{"metadata":{"name":"x","generateName":"x-"}}`},
	{name: "null spec", raw: `{"spec":null}`},
	{name: "null template", raw: `{"spec":{"template":null,"jobTemplate":{"spec":null}}}`},
	{name: "empty", raw: `{}`},
	{name: "null", raw: `null`},
	{name: "template is a number", raw: `{"spec":{"template":5}}`, fieldsFail: true},
	{name: "containers is a string", raw: `{"spec":{"containers":"x"}}`, fieldsFail: true},
	{name: "duplicate template", raw: `{"spec":{"template":{},"template":{"spec":{"containers":[{"image":"x"}]}}}}`, fieldsFail: true},
	{name: "duplicate image in a job template", raw: `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"a","image":"b"}]}}}}}}`, fieldsFail: true},
	{name: "case variants are not the fields", raw: `{"spec":{"Containers":[{"image":"x"}],"template":{"Spec":{"containers":[{"image":"y"}]}},"containers":[{"Image":"z"}]}}`},
	{name: "bad metadata", raw: `{"metadata":{"annotations":{"a":1}}}`, fieldsFail: true},
	{name: "image volumes at every location", raw: `{"spec":{"volumes":[{"name":"a","image":{"reference":"pod"}}],"template":{"spec":{"volumes":[{"name":"b","image":{"reference":"tmpl"}}]}},"jobTemplate":{"spec":{"template":{"spec":{"volumes":[{"name":"c","image":{"reference":"cron"}}]}}}}}}`},
	{name: "duplicate volume reference in a template", raw: `{"spec":{"template":{"spec":{"volumes":[{"name":"a","image":{"reference":"x","reference":"y"}}]}}}}`, fieldsFail: true},
	{name: "array", raw: `[]`, fieldsFail: true},
}

// TestFieldsObjectIsExtract checks the promise of Fields.Object: whenever
// an object decodes into Fields, Object gives exactly what Extract gives for
// the same bytes, for every kind and subresource. That is what lets the
// webhook decode objects before it looks at their kind.
func TestFieldsObjectIsExtract(t *testing.T) {
	gks := []schema.GroupKind{{Kind: "ConfigMap"}, {Group: "example.com", Kind: "Pod"}}
	for gk := range kinds {
		gks = append(gks, gk)
	}
	for _, tc := range fieldsCases {
		t.Run(tc.name, func(t *testing.T) {
			var f Fields
			err := Unmarshal([]byte(tc.raw), &f)
			if tc.fieldsFail {
				if err == nil {
					t.Fatal("Fields accepted the object")
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal into Fields: %v", err)
			}
			for _, gk := range gks {
				for _, sub := range []string{"", SubresourceEphemeralContainers, "status"} {
					want, werr := Extract(gk, sub, []byte(tc.raw))
					if werr != nil {
						t.Fatalf("%v %q: Extract failed (%v) where Fields did not", gk, sub, werr)
					}
					if got := f.Object(gk, sub); !reflect.DeepEqual(got, want) {
						t.Errorf("%v %q:\n Fields.Object = %+v\n Extract      = %+v", gk, sub, got, want)
					}
				}
			}
		})
	}
}

// TestLocationFollowsTheRequestKind pins the semantics the webhook relies on:
// the location read is the one of the kind asked for, never chosen by the
// object's own kind field or by where images happen to be.
func TestLocationFollowsTheRequestKind(t *testing.T) {
	var f Fields
	if err := Unmarshal([]byte(fieldsCases[4].raw), &f); err != nil {
		t.Fatal(err)
	}
	deploy := f.Object(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "")
	if len(deploy.Containers) != 1 || deploy.Containers[0].Path != "/spec/template/spec/containers/0/image" {
		t.Errorf("Deployment whose object says kind Pod: containers %+v, want the template's", deploy.Containers)
	}
	// A Pod has no spec.template: the API server drops it, nothing there runs.
	if pod := f.Object(schema.GroupKind{Kind: "Pod"}, ""); len(pod.Containers) != 0 {
		t.Errorf("Pod: containers %+v, want none", pod.Containers)
	}
}

func FuzzFieldsObjectIsExtract(f *testing.F) {
	for _, tc := range fieldsCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fields Fields
		ferr := Unmarshal(raw, &fields)
		for gk := range kinds {
			want, err := Extract(gk, "", raw)
			if ferr != nil {
				continue // the webhook falls back to Extract
			}
			if err != nil {
				t.Fatalf("%v: Fields accepted what Extract refuses: %v", gk, err)
			}
			if got := fields.Object(gk, ""); !reflect.DeepEqual(got, want) {
				t.Fatalf("%v:\n Fields.Object = %+v\n Extract      = %+v", gk, got, want)
			}
		}
	})
}

func TestUnmarshalRefusesDuplicatesAndIgnoresCase(t *testing.T) {
	var f Fields
	err := Unmarshal([]byte(`{"metadata":{"name":"a","name":"b"}}`), &f)
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate name: error %v, want one naming the duplicate", err)
	}
	var g Fields
	if err := Unmarshal([]byte(`{"Metadata":{"name":"a"}}`), &g); err != nil || g.Metadata.Name != "" {
		t.Errorf("Metadata: err %v, name %q; want the spelling ignored", err, g.Metadata.Name)
	}
	if err := Unmarshal([]byte(`{`), &Fields{}); err == nil || errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: error %v, want a plain JSON error", err)
	}
}

func BenchmarkFieldsObject(b *testing.B) {
	raw := wrap("apps/v1", "Deployment", []string{"spec", "template", "spec"})
	gk := schema.GroupKind{Group: "apps", Kind: "Deployment"}
	b.ReportAllocs()
	for b.Loop() {
		var f Fields
		if err := Unmarshal(raw, &f); err != nil {
			b.Fatal(err)
		}
		if f.Object(gk, "") == nil {
			b.Fatal("not judged")
		}
	}
}
