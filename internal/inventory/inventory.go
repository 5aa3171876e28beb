// Package inventory lists what runs in a live cluster: Pods and every
// workload kind trustgate judges, page by page, as workload.Objects. It is
// the read side of `trustgate audit` and of re-verification in `serve`, and,
// with pullsecrets, the only package that talks to the Kubernetes API.
//
// Lists are paginated (limit/continue), and a page is handed to the caller
// and dropped before the next is fetched, so memory stays flat on clusters
// of any size.
package inventory

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trustgate-dev/trustgate/internal/workload"
)

// Kind is one listable kind trustgate judges.
type Kind struct {
	GK       schema.GroupKind
	Resource string
	client   func(kubernetes.Interface) rest.Interface
}

// Kinds is every kind trustgate judges, Pods first.
var Kinds = []Kind{
	{schema.GroupKind{Kind: "Pod"}, "pods", core},
	{schema.GroupKind{Group: "apps", Kind: "Deployment"}, "deployments", apps},
	{schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, "statefulsets", apps},
	{schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, "daemonsets", apps},
	{schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}, "replicasets", apps},
	{schema.GroupKind{Kind: "ReplicationController"}, "replicationcontrollers", core},
	{schema.GroupKind{Group: "batch", Kind: "Job"}, "jobs", batch},
	{schema.GroupKind{Group: "batch", Kind: "CronJob"}, "cronjobs", batch},
}

func core(c kubernetes.Interface) rest.Interface  { return c.CoreV1().RESTClient() }
func apps(c kubernetes.Interface) rest.Interface  { return c.AppsV1().RESTClient() }
func batch(c kubernetes.Interface) rest.Interface { return c.BatchV1().RESTClient() }

// Lister walks the objects of a cluster.
type Lister struct {
	Client kubernetes.Interface
	// Namespaces to list; empty means all.
	Namespaces []string
	// Kinds to list; nil means Kinds.
	Kinds []Kind
	// PageSize is the list limit per API call (default 500).
	PageSize int64
}

// Stats counts what a walk read.
type Stats struct {
	Pages   int `json:"pages"`
	Objects int `json:"objects"`
}

// Page is one page of objects of one kind.
type Page struct {
	Kind    Kind
	Objects []*workload.Object
	// UIDs are the objects' metadata.uid, in the order of Objects (Events
	// name the object they are about by UID).
	UIDs []string
	// Malformed counts items that did not decode as their kind (reported by
	// the caller; they are not judged).
	Malformed []error
}

// Walk lists every object page by page and calls fn with each page. It stops
// at the first error, fn's included.
func (l *Lister) Walk(ctx context.Context, fn func(Page) error) (Stats, error) {
	var st Stats
	kinds := l.Kinds
	if kinds == nil {
		kinds = Kinds
	}
	namespaces := l.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	limit := l.PageSize
	if limit <= 0 {
		limit = 500
	}
	for _, k := range kinds {
		for _, ns := range namespaces {
			cont := ""
			for {
				req := k.client(l.Client).Get().Resource(k.Resource).
					Param("limit", fmt.Sprint(limit))
				if ns != "" {
					req = req.Namespace(ns)
				}
				if cont != "" {
					req = req.Param("continue", cont)
				}
				raw, err := req.Do(ctx).Raw()
				if err != nil {
					where := "all namespaces"
					if ns != "" {
						where = "namespace " + ns
					}
					return st, fmt.Errorf("list %s in %s: %w", k.Resource, where, err)
				}
				var list struct {
					Metadata struct {
						Continue string `json:"continue"`
					} `json:"metadata"`
					Items []json.RawMessage `json:"items"`
				}
				if err := json.Unmarshal(raw, &list); err != nil {
					return st, fmt.Errorf("decode %s list: %w", k.Resource, err)
				}
				st.Pages++
				page := Page{Kind: k}
				for _, item := range list.Items {
					var meta struct {
						Metadata struct {
							UID string `json:"uid"`
						} `json:"metadata"`
					}
					_ = json.Unmarshal(item, &meta) // the strict decode below reports errors
					obj, err := workload.Extract(k.GK, "", item)
					if err != nil {
						page.Malformed = append(page.Malformed, fmt.Errorf("%s: %w", k.Resource, err))
						continue
					}
					if obj == nil {
						continue
					}
					page.Objects = append(page.Objects, obj)
					page.UIDs = append(page.UIDs, meta.Metadata.UID)
				}
				st.Objects += len(page.Objects)
				if err := fn(page); err != nil {
					return st, err
				}
				cont = list.Metadata.Continue
				if cont == "" {
					break
				}
			}
		}
	}
	return st, nil
}
