package workload

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseManifests(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantSource []string
		wantImages [][]string
		wantErr    string
	}{
		{
			name: "multi-document YAML skips non-workloads",
			in: `# leading comment
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "alpine:3"}]
      containers:
      - name: app
        image: nginx:1.27
---
# only a comment
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: busybox}]
`,
			wantSource: []string{"document 2", "document 4"},
			wantImages: [][]string{{"nginx:1.27", "alpine:3"}, {"busybox"}},
		},
		{
			name: "kind List with items, and JSON documents",
			in: `{"apiVersion":"v1","kind":"List","items":[
  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x"}]}},
  {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}},
  {"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"b","image":"y"}]}}}}
]}`,
			wantSource: []string{"document 1, item 0", "document 1, item 2"},
			wantImages: [][]string{{"x"}, {"y"}},
		},
		{
			name: "typed list",
			in: `apiVersion: apps/v1
kind: DeploymentList
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: a}
  spec: {template: {spec: {containers: [{name: c, image: z}]}}}
`,
			wantSource: []string{"document 1, item 0"},
			wantImages: [][]string{{"z"}},
		},
		{
			name:       "Deployment of another group is not a workload",
			in:         "apiVersion: example.com/v1\nkind: Deployment\nspec: {template: {spec: {containers: [{name: c, image: z}]}}}\n",
			wantSource: nil,
		},
		{name: "empty input", in: ""},
		{name: "bad YAML", in: "apiVersion: v1\nkind: Pod\nspec: [\n", wantErr: "document 1"},
		{name: "scalar document", in: "just a string\n", wantErr: "document 1: not a Kubernetes object"},
		{name: "workload that does not decode", in: "---\napiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Pod\nspec: {containers: 3}\n", wantErr: "document 2"},
		{name: "bad apiVersion", in: "apiVersion: a/b/c\nkind: Pod\n", wantErr: "apiVersion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := ParseManifests(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseManifests error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseManifests: %v", err)
			}
			var sources []string
			var images [][]string
			for _, o := range objs {
				sources = append(sources, o.Source)
				images = append(images, o.Images())
			}
			if !reflect.DeepEqual(sources, tc.wantSource) {
				t.Errorf("sources = %q, want %q", sources, tc.wantSource)
			}
			if !reflect.DeepEqual(images, tc.wantImages) {
				t.Errorf("images = %q, want %q", images, tc.wantImages)
			}
		})
	}
}

func TestParseManifestsSizeCap(t *testing.T) {
	// One comment line longer than the cap: no document, but too much input.
	big := strings.NewReader("# " + strings.Repeat("x", MaxManifestBytes) + "\n")
	if _, err := ParseManifests(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ParseManifests error = %v, want size cap error", err)
	}
}
