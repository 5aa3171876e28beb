// Package audit judges what already runs: every image of every object an
// inventory walk yields, with the policy in force (and, optionally, a
// candidate policy), the way the webhook would judge it if it were created
// now. Each distinct (credentials, image) pair is judged once per policy;
// the engine's cache makes each (image, verifier) pair one verification.
package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

// Judge is the policy side of an audit: one engine per policy.
type Judge struct {
	Name   string // "current", or the candidate policy's file name
	Engine *engine.Engine
}

// Verdicts of a row.
const (
	Admit       = "admit"
	Deny        = "deny"
	Unavailable = "unavailable" // the check could not complete (server down, timeout)
	Exempt      = "exempt"
)

// Row is one image of one object, judged by every policy.
type Row struct {
	Namespace string    `json:"namespace"`
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Image     string    `json:"image"`
	Paths     []string  `json:"paths"`
	Verdicts  []Verdict `json:"verdicts"` // one per Judge, in order
}

// Verdict is one policy's judgement of a row's image.
type Verdict struct {
	Policy    string   `json:"policy"`
	Verdict   string   `json:"verdict"`
	Rule      string   `json:"rule,omitempty"`
	Digest    string   `json:"digest,omitempty"`
	Verifiers []string `json:"verifiers,omitempty"` // verifiers that passed
	// Deprecated lists the deprecated verifiers an admission rests on when
	// no other verifier passed (the image depends on them alone).
	Deprecated []string `json:"deprecated,omitempty"`
	Reason     string   `json:"reason"`
	// Expires is when the trust data behind an admission runs out (zero
	// when the scheme does not say).
	Expires time.Time `json:"expires,omitzero"`
}

// Summary counts per policy.
type Summary struct {
	Policy  string `json:"policy"`
	Objects int    `json:"objects"`
	Images  int    `json:"images"` // distinct images judged
	// DeniedObjects would be refused if created now.
	DeniedObjects int `json:"deniedObjects"`
	// UnavailableObjects could not be judged completely (a server down).
	UnavailableObjects int `json:"unavailableObjects"`
	// DeprecatedOnlyObjects are admitted only through deprecated verifiers.
	DeprecatedOnlyObjects int `json:"deprecatedOnlyObjects"`
	// ExemptObjects sit in exempt namespaces (not judged).
	ExemptObjects int `json:"exemptObjects"`
}

// Auditor judges objects. Its zero value is not usable: set Judges.
type Auditor struct {
	Judges []Judge
	// Concurrency bounds objects judged at once (default 8); the engine
	// bounds verifications per object on top of that.
	Concurrency int
	mu          sync.Mutex
	memo        []map[string]engine.Decision
	exempt      []map[string]bool
	rows        []Row
	sums        []Summary
	distinc     []map[string]bool
}

func (a *Auditor) init() {
	if a.memo != nil {
		return
	}
	for _, j := range a.Judges {
		a.memo = append(a.memo, map[string]engine.Decision{})
		a.exempt = append(a.exempt, map[string]bool{})
		a.distinc = append(a.distinc, map[string]bool{})
		a.sums = append(a.sums, Summary{Policy: j.Name})
	}
}

// Add judges the objects of one page. It is safe to call from one goroutine
// at a time (pages arrive in order); objects within it are judged in parallel.
func (a *Auditor) Add(ctx context.Context, objs []*workload.Object) error {
	a.mu.Lock()
	a.init()
	a.mu.Unlock()
	n := a.Concurrency
	if n <= 0 {
		n = 8
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for _, obj := range objs {
		g.Go(func() error {
			rows := a.judge(gctx, obj)
			a.mu.Lock()
			a.rows = append(a.rows, rows...)
			a.mu.Unlock()
			return gctx.Err()
		})
	}
	return g.Wait()
}

func credKey(obj *workload.Object) string {
	return obj.Namespace + "|" + obj.ServiceAccount + "|" + strings.Join(obj.PullSecrets, ",")
}

// decide judges img for obj with judge i, once per credentials and image.
func (a *Auditor) decide(ctx context.Context, i int, obj *workload.Object) (engine.Report, []engine.Decision) {
	images := obj.Images()
	out := make([]engine.Decision, len(images))
	var todo []string
	var todoIdx []int
	key := credKey(obj)
	a.mu.Lock()
	for k, img := range images {
		if d, ok := a.memo[i][key+"|"+img]; ok {
			out[k] = d
			continue
		}
		todo = append(todo, img)
		todoIdx = append(todoIdx, k)
	}
	a.mu.Unlock()
	if len(todo) == 0 {
		return engine.Report{}, out
	}
	eng := a.Judges[i].Engine
	dctx, cancel := context.WithTimeout(ctx, eng.Policy().Settings.Deadline)
	defer cancel()
	rep := eng.Evaluate(dctx, engine.Request{
		Namespace: obj.Namespace, Images: todo,
		ServiceAccount: obj.ServiceAccount, PullSecrets: obj.PullSecrets,
	})
	if rep.Exempt {
		return rep, nil
	}
	a.mu.Lock()
	for k, img := range todo {
		for _, d := range rep.Decisions {
			if d.Image == img {
				out[todoIdx[k]] = d
				if ctx.Err() == nil {
					a.memo[i][key+"|"+img] = d
				}
			}
		}
		a.distinc[i][img] = true
	}
	a.mu.Unlock()
	return rep, out
}

func (a *Auditor) judge(ctx context.Context, obj *workload.Object) []Row {
	images := obj.Images()
	rows := make([]Row, len(images))
	for k, img := range images {
		rows[k] = Row{Namespace: obj.Namespace, Kind: obj.Kind.Kind, Name: obj.Name, Image: img}
		for _, c := range obj.Containers {
			if c.Image == img {
				rows[k].Paths = append(rows[k].Paths, c.Path)
			}
		}
	}
	for i, j := range a.Judges {
		exempt := j.Engine.Policy().Exempt(obj.Namespace)
		var ds []engine.Decision
		if !exempt {
			var rep engine.Report
			rep, ds = a.decide(ctx, i, obj)
			exempt = rep.Exempt
		}
		denied, unavailable, onlyDeprecated := false, false, false
		for k := range rows {
			v := Verdict{Policy: j.Name}
			switch {
			case exempt:
				v.Verdict, v.Reason = Exempt, "the namespace is exempt"
			default:
				d := ds[k]
				v.Rule, v.Digest, v.Reason = d.Rule, d.Digest, d.Reason
				switch {
				case d.Allowed:
					v.Verdict = Admit
					v.Verifiers = passedVerifiers(d)
					v.Expires = expiresOf(d)
					if dep := deprecatedOnly(d); len(dep) > 0 {
						v.Deprecated = dep
						onlyDeprecated = true
					}
				case d.Unavailable:
					v.Verdict = Unavailable
					unavailable = true
				default:
					v.Verdict = Deny
					denied = true
				}
			}
			rows[k].Verdicts = append(rows[k].Verdicts, v)
		}
		a.mu.Lock()
		s := &a.sums[i]
		s.Objects++
		switch {
		case exempt:
			s.ExemptObjects++
		case denied:
			s.DeniedObjects++
		case unavailable:
			s.UnavailableObjects++
		case onlyDeprecated:
			s.DeprecatedOnlyObjects++
		}
		a.mu.Unlock()
	}
	return rows
}

// Result is the audit's outcome: rows sorted by namespace, kind, name, image.
func (a *Auditor) Result() ([]Row, []Summary) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	sort.SliceStable(a.rows, func(i, j int) bool {
		x, y := a.rows[i], a.rows[j]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.Kind != y.Kind {
			return x.Kind < y.Kind
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Image < y.Image
	})
	sums := append([]Summary(nil), a.sums...)
	for i := range sums {
		sums[i].Images = len(a.distinc[i])
	}
	return a.rows, sums
}

// Denied reports whether any row is not admitted (deny or unavailable) by the
// first policy: the exit status of `trustgate audit`.
func Denied(rows []Row) bool {
	for _, r := range rows {
		if len(r.Verdicts) > 0 && (r.Verdicts[0].Verdict == Deny || r.Verdicts[0].Verdict == Unavailable) {
			return true
		}
	}
	return false
}

// String is a one-line description for progress output.
func (s Summary) String() string {
	return fmt.Sprintf("%s: %d objects, %d distinct images, %d would be denied, %d could not be checked, %d admitted only through deprecated verifiers, %d in exempt namespaces",
		s.Policy, s.Objects, s.Images, s.DeniedObjects, s.UnavailableObjects, s.DeprecatedOnlyObjects, s.ExemptObjects)
}
