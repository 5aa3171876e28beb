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
	// KindImageVolume is an image volume (spec.volumes[].image.reference):
	// the kubelet pulls that image and mounts its content into containers,
	// so it is judged like a container image. Container.Name is the volume's
	// name.
	KindImageVolume = "imageVolume"
)

// SubresourceEphemeralContainers is the only Pod subresource whose requests
// carry images (kubectl debug adds ephemeral containers through it).
const SubresourceEphemeralContainers = "ephemeralcontainers"

// ErrMalformed is matched (errors.Is) by every decoding failure of an object of
// a judged kind.
var ErrMalformed = errors.New("malformed object")

// Container is one image the kubelet pulls for an object: a container's
// image or an image volume's reference.
type Container struct {
	Image string
	// Path is the RFC 6901 JSON pointer of the image field within the object,
	// e.g. /spec/template/spec/initContainers/0/image or
	// /spec/volumes/2/image/reference.
	Path string
	// Kind is KindContainer, KindInitContainer, KindEphemeralContainer or
	// KindImageVolume.
	Kind string
	Name string // the container's name, or the image volume's
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
	// Containers lists every image the kubelet would pull for the pod spec,
	// non-empty ones only: containers, then initContainers, then
	// ephemeralContainers, then image volumes, each in document order.
	// Templates may leave an image empty (a higher-level tool fills it in);
	// the Pods created from them are judged when they are created, so empty
	// images are not listed. These four are all the pod fields that make the
	// kubelet pull an image (k8s.io/api v0.37: Container.Image,
	// EphemeralContainer.Image, ImageVolumeSource.Reference).
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
func (o *Object) Images() []string { return Images(o.Containers) }

// Images returns the images of cs in first-seen order, without duplicates.
func Images(cs []Container) []string {
	seen := make(map[string]bool, len(cs))
	var out []string
	for _, c := range cs {
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
	// prefix is the JSON pointer of the pod spec within the object.
	prefix string
	// decode reads an object of this kind alone: only this kind's location
	// is declared, so nothing elsewhere in the object can make it fail.
	decode func(raw []byte) (objectMeta, *podSpec, error)
	// pick chooses this kind's location in Fields, which declares them all.
	pick func(s *anySpec) *podSpec
}

var kinds = map[schema.GroupKind]kindInfo{
	{Group: "", Kind: "Pod"}:                   atSpec,
	{Group: "", Kind: "ReplicationController"}: atTemplate,
	{Group: "apps", Kind: "Deployment"}:        atTemplate,
	{Group: "apps", Kind: "ReplicaSet"}:        atTemplate,
	{Group: "apps", Kind: "StatefulSet"}:       atTemplate,
	{Group: "apps", Kind: "DaemonSet"}:         atTemplate,
	{Group: "batch", Kind: "Job"}:              atTemplate,
	{Group: "batch", Kind: "CronJob"}:          atJobTemplate,
}

// The three places a judged kind keeps its pod spec.
var (
	atSpec = kindInfo{
		prefix: pointer([]string{"spec"}),
		decode: decodeKind((*podSpec).pod),
		pick:   func(s *anySpec) *podSpec { return s.podSpec.pod() },
	}
	atTemplate = kindInfo{
		prefix: pointer([]string{"spec", "template", "spec"}),
		decode: decodeKind((*templateSpec).pod),
		pick:   func(s *anySpec) *podSpec { return s.templateSpec.pod() },
	}
	atJobTemplate = kindInfo{
		prefix: pointer([]string{"spec", "jobTemplate", "spec", "template", "spec"}),
		decode: decodeKind((*cronJobSpec).pod),
		pick:   func(s *anySpec) *podSpec { return s.cronJobSpec.pod() },
	}
)

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
// does not care about, newer API fields included. podSpec is also a Pod's
// spec.
type podSpec struct {
	ServiceAccountName string `json:"serviceAccountName"`
	ImagePullSecrets   []struct {
		Name string `json:"name"`
	} `json:"imagePullSecrets"`
	Containers          []container `json:"containers"`
	InitContainers      []container `json:"initContainers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
	Volumes             []volume    `json:"volumes"`
}

func (s *podSpec) pod() *podSpec { return s }

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// volume is a pod volume; only image volumes carry an image. Decoded with
// the same strictness as containers, so "Image", "Reference" or a duplicated
// "reference" cannot hide one.
type volume struct {
	Name  string `json:"name"`
	Image *struct {
		Reference string `json:"reference"`
	} `json:"image"`
}

type withPodSpec struct {
	Spec *podSpec `json:"spec"`
}

// templateSpec is the spec of the kinds with a pod template (Deployment,
// Job, …), and of a CronJob's job template.
type templateSpec struct {
	Template *withPodSpec `json:"template"`
}

func (s *templateSpec) pod() *podSpec {
	if s == nil || s.Template == nil {
		return nil
	}
	return s.Template.Spec
}

// cronJobSpec is a CronJob's spec.
type cronJobSpec struct {
	JobTemplate *struct {
		Spec *templateSpec `json:"spec"`
	} `json:"jobTemplate"`
}

func (s *cronJobSpec) pod() *podSpec {
	if s.JobTemplate == nil {
		return nil
	}
	return s.JobTemplate.Spec.pod()
}

// anySpec declares the spec of every judged kind at once (the embedded
// structs' fields are promoted, and their JSON names do not collide), so an
// object can be decoded before its kind is looked at; kindInfo.pick then
// reads the one location that kind's objects keep their pod spec in.
type anySpec struct {
	podSpec
	templateSpec
	cronJobSpec
}

// Unmarshal decodes JSON the way the API server does: field names are
// case-sensitive ("Image" is not "image") and a duplicated field is an error
// rather than last-one-wins, so no spelling can hide an image from us that
// Kubernetes would run. Unknown fields are fine: only what trustgate reads is
// declared. Documents that embed Fields must be decoded with it.
func Unmarshal(raw []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(raw, v, kjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decodeKind returns the decoder of the kinds whose spec is an S, with pick
// finding the pod spec in it.
func decodeKind[S any](pick func(*S) *podSpec) func(raw []byte) (objectMeta, *podSpec, error) {
	return func(raw []byte) (objectMeta, *podSpec, error) {
		var o struct {
			Metadata objectMeta `json:"metadata"`
			Spec     *S         `json:"spec"`
		}
		if err := Unmarshal(raw, &o); err != nil || o.Spec == nil {
			return o.Metadata, nil, err
		}
		return o.Metadata, pick(o.Spec), nil
	}
}

// Fields is what trustgate reads of an object of any judged kind: its
// metadata and the pod spec at every location a judged kind keeps one
// (spec, spec.template.spec, spec.jobTemplate.spec.template.spec). It lets
// a caller decode an object in the same pass as the document around it (the
// webhook decodes a whole AdmissionReview at once) and choose the location
// by kind afterwards, with Object.
//
// The fields are exported only for the decoder. Decode with Unmarshal: a
// Fields is meaningful only if that whole decode succeeded. When it fails,
// fall back to Extract on the object's bytes: Fields declares every
// location, so a field of the wrong type where the kind keeps no pod spec
// fails Fields but not Extract, and Extract's error names the kind.
type Fields struct {
	Metadata objectMeta `json:"metadata"`
	Spec     *anySpec   `json:"spec"`
}

// Object returns what Extract(gk, subresource, raw) returns for the raw
// object f was decoded from: nil when the kind is not judged, else the
// metadata and the containers at the location of kind gk. Containers
// anywhere else are ignored, as the API server ignores (drops) them.
func (f *Fields) Object(gk schema.GroupKind, subresource string) *Object {
	if !Judged(gk, subresource) {
		return nil
	}
	info := kinds[gk]
	var spec *podSpec
	if f.Spec != nil {
		spec = info.pick(f.Spec)
	}
	return newObject(gk, f.Metadata, spec, info.prefix)
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
	return newObject(gk, meta, spec, info.prefix), nil
}

// newObject lists the images of spec, the pod spec at prefix (a JSON
// pointer) of an object of kind gk with metadata meta; spec is nil when the
// object has none (yet).
func newObject(gk schema.GroupKind, meta objectMeta, spec *podSpec, prefix string) *Object {
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
		return obj // no pod spec (yet): nothing to judge
	}
	obj.ServiceAccount = spec.ServiceAccountName
	for _, ps := range spec.ImagePullSecrets {
		if ps.Name != "" {
			obj.PullSecrets = append(obj.PullSecrets, ps.Name)
		}
	}
	obj.Containers = appendContainers(obj.Containers, prefix+"/containers", KindContainer, spec.Containers)
	obj.Containers = appendContainers(obj.Containers, prefix+"/initContainers", KindInitContainer, spec.InitContainers)
	obj.Containers = appendContainers(obj.Containers, prefix+"/ephemeralContainers", KindEphemeralContainer, spec.EphemeralContainers)
	for i, v := range spec.Volumes {
		if v.Image == nil || v.Image.Reference == "" {
			continue
		}
		obj.Containers = append(obj.Containers, Container{
			Image: v.Image.Reference,
			Path:  prefix + "/volumes/" + strconv.Itoa(i) + "/image/reference",
			Kind:  KindImageVolume,
			Name:  v.Name,
		})
	}
	return obj
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
	if !strings.ContainsAny(token, "~/") {
		return token
	}
	return pointerEscaper.Replace(token)
}

// pointerEscaper is built once: a Replacer is safe for concurrent use, and
// building one per call cost more than the replacing.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
