// Package workload finds the container images in Kubernetes objects: Pods and
// every built-in kind that carries a pod template. It records, for each image,
// the JSON pointer of the field it came from, so a mutating webhook can pin
// exactly that field. It is pure: no network, no client, only JSON decoding.
package workload

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
)

// Container kinds, as reported in Container.Kind.
const (
	KindContainer          = "container"
	KindInitContainer      = "initContainer"
	KindEphemeralContainer = "ephemeralContainer"
)

// SubresourceEphemeralContainers is the only Pod subresource whose requests
// carry images (kubectl debug adds ephemeral containers through it).
const SubresourceEphemeralContainers = "ephemeralcontainers"

// ErrMalformed is matched (errors.Is) by every decoding failure of an object of
// a judged kind.
var ErrMalformed = errors.New("malformed object")

// Container is one image-bearing container of an object.
type Container struct {
	Image string
	// Path is the RFC 6901 JSON pointer of the image field within the object,
	// e.g. /spec/template/spec/initContainers/0/image.
	Path string
	Kind string // KindContainer, KindInitContainer or KindEphemeralContainer
	Name string
}

// Object is what trustgate needs from a workload object.
type Object struct {
	Kind              schema.GroupKind
	Name              string
	GenerateName      string
	Namespace         string
	Annotations       map[string]string
	DeletionTimestamp *metav1.Time
	OwnerReferences   []metav1.OwnerReference
	// Containers with a non-empty image, in document order: containers, then
	// initContainers, then ephemeralContainers. Templates may leave the image
	// empty (a higher-level tool fills it in); the Pods created from them are
	// judged when they are created, so empty images are not listed.
	Containers []Container
	// ServiceAccount and PullSecrets are the pod spec's serviceAccountName
	// and imagePullSecrets: the credentials the kubelet would pull with, used
	// to resolve digests for pinning.
	ServiceAccount string
	PullSecrets    []string
	// Source says where a manifest object came from ("document 2", "document
	// 1, item 3"); empty for objects from admission requests.
	Source string
	// docPath locates a List item within its manifest document.
	docPath []string
}

// Images returns the images of o in first-seen order, without duplicates.
func (o *Object) Images() []string {
	seen := make(map[string]bool, len(o.Containers))
	var out []string
	for _, c := range o.Containers {
		if !seen[c.Image] {
			seen[c.Image] = true
			out = append(out, c.Image)
		}
	}
	return out
}

// Deleting reports whether the object is being deleted (it waits on finalizers).
func (o *Object) Deleting() bool { return o.DeletionTimestamp != nil }

// kindInfo says where a judged kind keeps its pod spec and how to decode it.
// All served versions of these kinds share this layout, so the version is not
// part of the key (the API server converts to the version the webhook asked
// for).
type kindInfo struct {
	path   []string
	decode func(raw []byte) (objectMeta, *podSpec, error)
}

var kinds = map[schema.GroupKind]kindInfo{
	{Group: "", Kind: "Pod"}:                   {[]string{"spec"}, decodePod},
	{Group: "", Kind: "ReplicationController"}: {templatePath, decodeTemplate},
	{Group: "apps", Kind: "Deployment"}:        {templatePath, decodeTemplate},
	{Group: "apps", Kind: "ReplicaSet"}:        {templatePath, decodeTemplate},
	{Group: "apps", Kind: "StatefulSet"}:       {templatePath, decodeTemplate},
	{Group: "apps", Kind: "DaemonSet"}:         {templatePath, decodeTemplate},
	{Group: "batch", Kind: "Job"}:              {templatePath, decodeTemplate},
	{Group: "batch", Kind: "CronJob"}:          {[]string{"spec", "jobTemplate", "spec", "template", "spec"}, decodeCronJob},
}

var templatePath = []string{"spec", "template", "spec"}

// objectMeta holds the metadata fields trustgate reads.
type objectMeta struct {
	Name              string                  `json:"name"`
	GenerateName      string                  `json:"generateName"`
	Namespace         string                  `json:"namespace"`
	Annotations       map[string]string       `json:"annotations"`
	DeletionTimestamp *metav1.Time            `json:"deletionTimestamp"`
	OwnerReferences   []metav1.OwnerReference `json:"ownerReferences"`
}

// podSpec and container hold only what trustgate reads; decoding just these
// keeps Extract fast (one pass over the object) and tolerant of fields it
// does not care about, newer API fields included.
type podSpec struct {
	ServiceAccountName string `json:"serviceAccountName"`
	ImagePullSecrets   []struct {
		Name string `json:"name"`
	} `json:"imagePullSecrets"`
	Containers          []container `json:"containers"`
	InitContainers      []container `json:"initContainers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type withPodSpec struct {
	Spec *podSpec `json:"spec"`
}

// unmarshal decodes JSON the way the API server does: field names are
// case-sensitive ("Image" is not "image") and a duplicated field is an error
// rather than last-one-wins, so no spelling can hide an image from us that
// Kubernetes would run. Unknown fields are fine: only what trustgate reads is
// declared.
func unmarshal(raw []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, v, kjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func decodePod(raw []byte) (objectMeta, *podSpec, error) {
	var o struct {
		Metadata objectMeta `json:"metadata"`
		Spec     *podSpec   `json:"spec"`
	}
	err := unmarshal(raw, &o)
	return o.Metadata, o.Spec, err
}

func decodeTemplate(raw []byte) (objectMeta, *podSpec, error) {
	var o struct {
		Metadata objectMeta `json:"metadata"`
		Spec     *struct {
			Template *withPodSpec `json:"template"`
		} `json:"spec"`
	}
	if err := unmarshal(raw, &o); err != nil {
		return o.Metadata, nil, err
	}
	if o.Spec == nil || o.Spec.Template == nil {
		return o.Metadata, nil, nil
	}
	return o.Metadata, o.Spec.Template.Spec, nil
}

func decodeCronJob(raw []byte) (objectMeta, *podSpec, error) {
	var o struct {
		Metadata objectMeta `json:"metadata"`
		Spec     *struct {
			JobTemplate *struct {
				Spec *struct {
					Template *withPodSpec `json:"template"`
				} `json:"spec"`
			} `json:"jobTemplate"`
		} `json:"spec"`
	}
	if err := unmarshal(raw, &o); err != nil {
		return o.Metadata, nil, err
	}
	if o.Spec == nil || o.Spec.JobTemplate == nil || o.Spec.JobTemplate.Spec == nil || o.Spec.JobTemplate.Spec.Template == nil {
		return o.Metadata, nil, nil
	}
	return o.Metadata, o.Spec.JobTemplate.Spec.Template.Spec, nil
}

// Judged reports whether objects of kind gk, reached through subresource
// ("" for the main resource), carry images that trustgate judges. Of the
// subresources only pods/ephemeralcontainers does: the others (status,
// scale, binding, …) cannot change images.
func Judged(gk schema.GroupKind, subresource string) bool {
	if _, ok := kinds[gk]; !ok {
		return false
	}
	switch subresource {
	case "":
		return true
	case SubresourceEphemeralContainers:
		return gk == schema.GroupKind{Kind: "Pod"}
	default:
		return false
	}
}

// Extract decodes raw, an object of kind gk reached through subresource, and
// lists its images. It returns (nil, nil) when the kind is not judged (see
// Judged): that is not an error, the caller simply has nothing to check.
func Extract(gk schema.GroupKind, subresource string, raw []byte) (*Object, error) {
	if !Judged(gk, subresource) {
		return nil, nil
	}
	info := kinds[gk]
	meta, spec, err := info.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrMalformed, gk.String(), err)
	}
	obj := &Object{
		Kind:              gk,
		Name:              meta.Name,
		GenerateName:      meta.GenerateName,
		Namespace:         meta.Namespace,
		Annotations:       meta.Annotations,
		DeletionTimestamp: meta.DeletionTimestamp,
		OwnerReferences:   meta.OwnerReferences,
	}
	if spec == nil {
		return obj, nil // no pod spec (yet): nothing to judge
	}
	obj.ServiceAccount = spec.ServiceAccountName
	for _, ps := range spec.ImagePullSecrets {
		if ps.Name != "" {
			obj.PullSecrets = append(obj.PullSecrets, ps.Name)
		}
	}
	prefix := pointer(info.path)
	obj.Containers = appendContainers(obj.Containers, prefix+"/containers", KindContainer, spec.Containers)
	obj.Containers = appendContainers(obj.Containers, prefix+"/initContainers", KindInitContainer, spec.InitContainers)
	obj.Containers = appendContainers(obj.Containers, prefix+"/ephemeralContainers", KindEphemeralContainer, spec.EphemeralContainers)
	return obj, nil
}

func appendContainers(dst []Container, prefix, kind string, cs []container) []Container {
	for i, c := range cs {
		if c.Image == "" {
			continue
		}
		dst = append(dst, Container{
			Image: c.Image,
			Path:  prefix + "/" + strconv.Itoa(i) + "/image",
			Kind:  kind,
			Name:  c.Name,
		})
	}
	return dst
}

// pointer renders keys as an RFC 6901 JSON pointer ("" for the root).
func pointer(keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteByte('/')
		b.WriteString(EscapePointer(k))
	}
	return b.String()
}

// EscapePointer escapes one JSON pointer reference token (RFC 6901 §3):
// "~" becomes "~0" and "/" becomes "~1".
func EscapePointer(token string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(token)
}
