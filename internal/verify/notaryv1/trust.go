package notaryv1

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// rootState is a trusted root.json.
type rootState struct {
	raw  []byte
	root *tuf.Root
	// certExpires is when too few of the signing root certificates remain
	// in date for the root to be trusted; zero when they do not expire.
	certExpires time.Time
}

// expiry is when the root stops being trusted without a successor.
func (r *rootState) expiry() time.Time { return earliest(r.root.Expires, r.certExpires) }

// roleData is a verified targets role (targets.json or a delegation).
type roleData struct {
	meta    tuf.FileMeta
	targets *tuf.Targets
	// chain holds the delegation entries from targets down to this role; a
	// target counts only if every one of them allows its name.
	chain []tuf.DelegatedRole
	// reused says the file was unchanged since the previous update, so it
	// was not fetched again; a delegation may be reused only when its
	// parent (which holds its keys) was reused too.
	reused bool
}

// trustData is one consistent, fully verified view of a repository.
// It is immutable once built.
type trustData struct {
	root      *rootState
	timestamp *tuf.Timestamp
	snapshot  *tuf.Snapshot
	snapMeta  tuf.FileMeta
	// roles holds "targets" and the delegations trustgate needs; a missing
	// entry means the role does not exist.
	roles     map[string]*roleData
	fetchedAt time.Time
	expires   time.Time // earliest expiry of the metadata above
}

// gunState is what this process remembers about one repository.
type gunState struct {
	mu sync.Mutex
	// root is the trusted root (pinned-verified or first seen), kept even
	// when a later step fails so trust on first use cannot be re-rolled.
	root *rootState
	data *trustData
	// seen is the highest version verified per role: the rollback guard.
	seen map[string]int

	// gun and elem place the entry in Verifier.lru; guarded by Verifier.mu.
	gun  string
	elem *list.Element
}

// gunState returns what is remembered about gun, making it the most
// recently used entry. Memory is bounded: past maxGUNs entries the least
// recently used repository is forgotten, so a pod naming many repositories
// cannot push out the root of one in steady use (under trust on first use,
// forgetting a root means learning it again from the server).
func (v *Verifier) gunState(gun string) *gunState {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st, ok := v.guns[gun]; ok {
		v.lru.MoveToFront(st.elem)
		return st
	}
	limit := v.maxGUNs
	if limit <= 0 {
		limit = maxGUNs
	}
	for len(v.guns) >= limit {
		oldest := v.lru.Back().Value.(*gunState)
		v.dropLocked(oldest.gun)
		if v.cfg.tofu {
			v.logger.Info("notary repository forgotten (least recently used); its first-use root will be learned again",
				"verifier", v.name, "gun", oldest.gun, "repositories", limit)
		}
	}
	st := &gunState{gun: gun}
	st.elem = v.lru.PushFront(st)
	v.guns[gun] = st
	return st
}

// dropLocked forgets gun; v.mu is held.
func (v *Verifier) dropLocked(gun string) {
	if st, ok := v.guns[gun]; ok {
		v.lru.Remove(st.elem)
		delete(v.guns, gun)
	}
}

// current returns cached trust data when it may be used without asking the
// server: fetched within the freshness interval and not expired.
func (v *Verifier) current(st *gunState, now time.Time) *trustData {
	st.mu.Lock()
	defer st.mu.Unlock()
	td := st.data
	if td == nil || v.freshness <= 0 || now.Sub(td.fetchedAt) >= v.freshness || !now.Before(td.expires) {
		return nil
	}
	return td
}

// refresh brings the repository's trust data up to date. Only one refresh
// per repository runs at a time (singleflight in the caller).
func (v *Verifier) refresh(ctx context.Context, gun, registry string, st *gunState) (*trustData, error) {
	st.mu.Lock()
	root, old, seen := st.root, st.data, maps.Clone(st.seen)
	st.mu.Unlock()
	if seen == nil {
		seen = map[string]int{}
	}
	now := v.now()
	var early *earlyFetches
	if root == nil {
		// Cold start: root.json, timestamp.json and snapshot.json travel
		// together when that pays (see mayParallelize), one round trip
		// instead of three. Nothing is read before the file that vouches
		// for it is verified: the timestamp once this root is trusted, the
		// snapshot once the timestamp pins its hashes (a snapshot that does
		// not match them, say one published in between, is fetched again).
		// The price: a repository without trust data costs three requests
		// (all 404) instead of one.
		if v.fetch.mayParallelize(true) {
			ps := newPrefetches(ctx)
			defer ps.stop()
			early = &earlyFetches{
				timestamp: start(ps, func(ctx context.Context) ([]byte, error) {
					return v.fetch.fetchRole(ctx, gun, registry, tuf.RoleTimestamp, v.maxMeta)
				}),
				snapshot: start(ps, func(ctx context.Context) ([]byte, error) {
					return v.fetch.fetchRole(ctx, gun, registry, tuf.RoleSnapshot, v.maxMeta)
				}),
			}
		}
		raw, err := v.fetch.fetchRole(ctx, gun, registry, tuf.RoleRoot, v.maxMeta)
		if errors.Is(err, errNotFound) {
			return nil, untrusted(nil, "%s has no trust data on %s; sign the image with `docker trust sign`, or check the verifier's server", gun, v.fetch.base)
		}
		if err != nil {
			return nil, err
		}
		root, err = v.checkRoot(gun, raw, nil, now)
		if err != nil {
			return nil, err
		}
		if len(v.cfg.pins) == 0 {
			// An operator should see when trust is decided by first sight.
			v.logger.Info("notary root trusted on first use", "verifier", v.name, "gun", gun, "version", root.root.Version)
		}
		v.keepRoot(st, nil, root)
	}
	for attempt := 0; ; attempt++ {
		td, rotated, err := v.update(ctx, gun, registry, root, old, seen, now, early)
		early = nil // after a rotation everything is fetched again
		if err != nil {
			return nil, err
		}
		if rotated == nil {
			for role, rd := range td.roles {
				seen[role] = rd.targets.Version
			}
			seen[tuf.RoleRoot] = td.root.root.Version
			seen[tuf.RoleTimestamp] = td.timestamp.Version
			seen[tuf.RoleSnapshot] = td.snapshot.Version
			st.mu.Lock()
			st.root, st.data, st.seen = td.root, td, seen
			st.mu.Unlock()
			if v.fetch.seen != nil {
				v.fetch.seen.refreshed.Store(true)
			}
			return td, nil
		}
		if attempt > 0 {
			return nil, untrusted(nil, "root of %s changed twice during one update", gun)
		}
		// A new root was accepted: everything must be re-verified with its keys.
		v.logger.Info("notary root rotated", "verifier", v.name, "gun", gun,
			"fromVersion", root.root.Version, "toVersion", rotated.root.Version)
		if baseKeysChanged(root.root, rotated.root) {
			v.logger.Info("notary timestamp/snapshot keys rotated: their version floors are reset",
				"verifier", v.name, "gun", gun, "timestampVersionSeen", seen[tuf.RoleTimestamp], "snapshotVersionSeen", seen[tuf.RoleSnapshot])
			delete(seen, tuf.RoleTimestamp)
			delete(seen, tuf.RoleSnapshot)
		}
		v.keepRoot(st, root, rotated)
		root, old = rotated, nil
	}
}

// keepRoot records r as the trusted root, replacing prev (nil for the first
// root). When r rotates the timestamp or snapshot keys, the stored version
// floors of those roles go too: the root is trusted from now on even if
// this update fails later, so the next one would not see the rotation again.
func (v *Verifier) keepRoot(st *gunState, prev, r *rootState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.root = r
	if st.seen == nil {
		st.seen = map[string]int{}
	}
	if prev != nil && baseKeysChanged(prev.root, r.root) {
		delete(st.seen, tuf.RoleTimestamp)
		delete(st.seen, tuf.RoleSnapshot)
	}
	st.seen[tuf.RoleRoot] = max(st.seen[tuf.RoleRoot], r.root.Version)
}

// checkRoot decides whether raw is a root to trust: when replacing prev,
// signed to prev's threshold and newer; self-signed to its own threshold by
// root keys whose certificates name gun and are in date; signed by a pinned
// key when keys are pinned; not expired.
func (v *Verifier) checkRoot(gun string, raw []byte, prev *rootState, now time.Time) (*rootState, error) {
	s, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil, unavailable(err, "root of %s is malformed", gun)
	}
	var r tuf.Root
	if err := s.Decode(tuf.TypeRoot, &r); err != nil {
		return nil, untrusted(err, "root of %s", gun)
	}
	for _, role := range []string{tuf.RoleRoot, tuf.RoleTimestamp, tuf.RoleSnapshot, tuf.RoleTargets} {
		if _, ok := r.Roles[role]; !ok {
			return nil, untrusted(nil, "root of %s defines no %s role", gun, role)
		}
	}
	if prev != nil {
		// The signature first: a root re-created under another key is a
		// key change, whatever version number it happens to carry.
		pk := prev.root.Roles[tuf.RoleRoot]
		if _, err := s.VerifySignatures(prev.root.Keys, pk.KeyIDs, pk.Threshold); err != nil {
			return nil, untrusted(err, "root of %s was replaced by one (version %d) not signed by the trusted root key(s) (version %d); "+
				"if the repository was re-created on purpose, pin its new root key", gun, r.Version, prev.root.Version)
		}
		if r.Version <= prev.root.Version {
			return nil, untrusted(nil, "root of %s: version %d is not newer than trusted version %d (rollback)", gun, r.Version, prev.root.Version)
		}
	}
	rk := r.Roles[tuf.RoleRoot]
	ids, problems := rootKeys(&r, gun, now, true)
	signers, err := s.VerifySignatures(r.Keys, ids, rk.Threshold)
	if err != nil {
		if len(problems) > 0 {
			return nil, untrusted(nil, "root of %s (version %d) is not signed by a valid root certificate for %s (%s)", gun, r.Version, gun, joinProblems(problems))
		}
		return nil, untrusted(err, "root of %s (version %d) is not signed by its own root keys", gun, r.Version)
	}
	if prev == nil && len(v.cfg.pins) == 0 && !v.cfg.tofu {
		// parseConfig forbids this; kept so trust can never default to open.
		return nil, untrusted(nil, "root of %s: no root keys pinned and trust on first use is off", gun)
	}
	if len(v.cfg.pins) > 0 && !v.signedByPin(&r, signers) {
		return nil, untrusted(nil, "root of %s is not signed by a key in rootKeys; if the publisher rotated the root key, pin the new one", gun)
	}
	if !now.Before(r.Expires) {
		return nil, untrusted(nil, "root of %s expired at %s", gun, r.Expires.UTC().Format(time.RFC3339))
	}
	return &rootState{raw: raw, root: &r, certExpires: certValidUntil(&r, signers)}, nil
}

func (v *Verifier) signedByPin(r *tuf.Root, signers []string) bool {
	for _, id := range signers {
		der, err := r.Keys[id].PKIX()
		if err != nil {
			continue
		}
		for _, pin := range v.cfg.pins {
			if bytes.Equal(der, pin) {
				return true
			}
		}
	}
	return false
}

// rotateRoot fetches root.json and accepts it if it is a proper successor of
// cur. It returns nil, nil when the server's root is cur itself.
func (v *Verifier) rotateRoot(ctx context.Context, gun, registry string, cur *rootState, meta *tuf.FileMeta, now time.Time) (*rootState, error) {
	limit := v.maxMeta
	if meta != nil {
		limit = meta.Length
	}
	raw, err := v.fetch.fetchRole(ctx, gun, registry, tuf.RoleRoot, limit)
	if errors.Is(err, errNotFound) {
		return nil, untrusted(nil, "root of %s is gone from %s", gun, v.fetch.base)
	}
	if err != nil {
		return nil, err
	}
	if meta != nil {
		if err := tuf.CheckFile(raw, *meta); err != nil {
			return nil, untrusted(err, "root of %s does not match the snapshot", gun)
		}
	}
	if bytes.Equal(raw, cur.raw) {
		return nil, nil
	}
	latest, err := v.checkRoot(gun, raw, cur, now)
	if err == nil {
		return latest, nil
	}
	// The root may have been rotated more than once since the one we trust:
	// walk the versions in between (<n>.root.json), each signed by its
	// predecessor, as the Notary client does.
	s, perr := tuf.ParseSigned(raw)
	var r tuf.Root
	if perr != nil || s.Decode(tuf.TypeRoot, &r) != nil || r.Version <= cur.root.Version+1 || r.Version-cur.root.Version > maxRootSteps {
		return nil, err
	}
	prev := cur
	for n := cur.root.Version + 1; n < r.Version; n++ {
		step, ferr := v.fetch.fetchRole(ctx, gun, registry, fmt.Sprintf("%d.%s", n, tuf.RoleRoot), v.maxMeta)
		if errors.Is(ferr, errNotFound) {
			return nil, err
		}
		if ferr != nil {
			return nil, ferr
		}
		next, serr := v.checkRootStep(gun, step, prev, now, n)
		if serr != nil {
			return nil, serr
		}
		prev = next
	}
	return v.checkRoot(gun, raw, prev, now)
}

// maxRootSteps bounds how many intermediate roots one update may walk.
const maxRootSteps = 32

// checkRootStep verifies an intermediate root of a rotation chain: it must
// have version want and be signed by prev and by itself. It may have
// expired since, and need not be pinned: only the newest root must be.
func (v *Verifier) checkRootStep(gun string, raw []byte, prev *rootState, now time.Time, want int) (*rootState, error) {
	s, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil, untrusted(err, "root version %d of %s", want, gun)
	}
	var r tuf.Root
	if err := s.Decode(tuf.TypeRoot, &r); err != nil {
		return nil, untrusted(err, "root version %d of %s", want, gun)
	}
	if r.Version != want {
		return nil, untrusted(nil, "%d.root.json of %s holds version %d", want, gun, r.Version)
	}
	rk, ok := r.Roles[tuf.RoleRoot]
	if !ok {
		return nil, untrusted(nil, "root version %d of %s defines no root role", want, gun)
	}
	pk := prev.root.Roles[tuf.RoleRoot]
	if _, err := s.VerifySignatures(prev.root.Keys, pk.KeyIDs, pk.Threshold); err != nil {
		return nil, untrusted(err, "root version %d of %s is not signed by the trusted root key(s) (version %d)", want, gun, prev.root.Version)
	}
	// Its certificates may have expired since, but must name gun.
	ids, problems := rootKeys(&r, gun, now, false)
	if _, err := s.VerifySignatures(r.Keys, ids, rk.Threshold); err != nil {
		if len(problems) > 0 {
			return nil, untrusted(nil, "root version %d of %s is not signed by a root certificate for %s (%s)", want, gun, gun, joinProblems(problems))
		}
		return nil, untrusted(err, "root version %d of %s is not signed by its own root keys", want, gun)
	}
	return &rootState{raw: raw, root: &r}, nil
}

// update verifies timestamp → snapshot → targets → delegations with root.
// If the metadata shows that root has been replaced (the snapshot pins a
// different root.json, or the timestamp/snapshot keys no longer verify), it
// returns the verified successor root instead and the caller starts over.
// early, when not nil, holds downloads already under way.
func (v *Verifier) update(ctx context.Context, gun, registry string, root *rootState, old *trustData, seen map[string]int, now time.Time, early *earlyFetches) (*trustData, *rootState, error) {
	if old != nil && old.root != root {
		old = nil
	}
	td := &trustData{root: root, roles: map[string]*roleData{}, expires: root.expiry()}

	// The trusted root (or its certificates) may have expired since it was
	// accepted: only a successor signed by it can help.
	if !now.Before(root.expiry()) {
		rotated, err := v.rotateRoot(ctx, gun, registry, root, nil, now)
		if err != nil || rotated != nil {
			return nil, rotated, err
		}
		if now.Before(root.root.Expires) {
			return nil, nil, untrusted(nil, "root certificate of %s expired at %s; the publisher must rotate the root key (notary key rotate %s root)",
				gun, root.certExpires.UTC().Format(time.RFC3339), gun)
		}
		return nil, nil, untrusted(nil, "root of %s expired at %s; the publisher must re-sign it with the root key", gun, root.root.Expires.UTC().Format(time.RFC3339))
	}

	// Timestamp: size unknown, so capped by the configured maximum.
	var raw []byte
	var err error
	if early != nil {
		raw, err = early.timestamp.wait()
	} else {
		raw, err = v.fetch.fetchRole(ctx, gun, registry, tuf.RoleTimestamp, v.maxMeta)
	}
	if errors.Is(err, errNotFound) {
		return nil, nil, untrusted(nil, "%s has no timestamp on %s", gun, v.fetch.base)
	}
	if err != nil {
		return nil, nil, err
	}
	s, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil, nil, unavailable(err, "timestamp of %s is malformed", gun)
	}
	if rotated, err := v.verifyBase(ctx, gun, registry, root, tuf.RoleTimestamp, s, now); rotated != nil || err != nil {
		return nil, rotated, err
	}
	var ts tuf.Timestamp
	if err := v.decode(gun, tuf.RoleTimestamp, s, tuf.TypeTimestamp, &ts, &ts.Common, seen, now); err != nil {
		return nil, nil, err
	}
	td.timestamp = &ts
	td.expires = earliest(td.expires, ts.Expires)

	// Snapshot, pinned by the timestamp.
	snapMeta, ok := ts.Meta[tuf.RoleSnapshot]
	if !ok {
		return nil, nil, untrusted(nil, "timestamp of %s does not pin a snapshot", gun)
	}
	td.snapMeta = snapMeta
	if old != nil && tuf.SameFile(old.snapMeta, snapMeta) {
		td.snapshot = old.snapshot
		if err := checkFresh(gun, tuf.RoleSnapshot, &td.snapshot.Common, seen, now); err != nil {
			return nil, nil, err
		}
	} else {
		s := early.pinnedSnapshot(snapMeta)
		if s == nil {
			if s, err = v.fetchPinned(ctx, gun, registry, tuf.RoleSnapshot, snapMeta); err != nil {
				return nil, nil, err
			}
		}
		if rotated, err := v.verifyBase(ctx, gun, registry, root, tuf.RoleSnapshot, s, now); rotated != nil || err != nil {
			return nil, rotated, err
		}
		var snap tuf.Snapshot
		if err := v.decode(gun, tuf.RoleSnapshot, s, tuf.TypeSnapshot, &snap, &snap.Common, seen, now); err != nil {
			return nil, nil, err
		}
		td.snapshot = &snap
	}
	td.expires = earliest(td.expires, td.snapshot.Expires)

	// A snapshot that pins another root.json means the root was rotated.
	if rm, ok := td.snapshot.Meta[tuf.RoleRoot]; ok && tuf.CheckFile(root.raw, rm) != nil {
		rotated, err := v.rotateRoot(ctx, gun, registry, root, &rm, now)
		if err != nil {
			return nil, nil, err
		}
		if rotated == nil { // cannot happen: CheckFile differed but bytes equal
			return nil, nil, untrusted(nil, "root of %s does not match its snapshot", gun)
		}
		return nil, rotated, nil
	}

	// targets.json and the delegations on the way to the counted roles are
	// all pinned (length and hashes) by the snapshot, so the ones that
	// cannot be reused are downloaded together, then verified below in
	// delegation order, each with the keys of the role above it. Which
	// delegations exist is known only from targets.json: one downloaded
	// here that turns out not to be delegated is dropped unread, whatever
	// its download gave (a 404 included). Only roles the snapshot lists are
	// tried, so a repository without them costs no request.
	var pending map[string]*prefetch[*tuf.Signed]
	if v.fetch.mayParallelize(false) {
		var stop func()
		pending, stop = v.prefetchTargets(ctx, gun, registry, td.snapshot, old)
		defer stop() // ends downloads left unused by an early return
	}

	// targets.json, keys from root.
	tk := root.root.Roles[tuf.RoleTargets]
	rd, err := v.loadTargets(ctx, gun, registry, tuf.RoleTargets, td.snapshot, root.root.Keys, tk.KeyIDs, tk.Threshold, old, seen, now, pending[tuf.RoleTargets])
	if err != nil {
		return nil, nil, err
	}
	td.roles[tuf.RoleTargets] = rd
	td.expires = earliest(td.expires, rd.targets.Expires)

	// Delegations on the way to the counted roles, parents first.
	for _, name := range v.load {
		parentName := name[:strings.LastIndexByte(name, '/')]
		parent := td.roles[parentName]
		if parent == nil {
			continue // parent role does not exist, so neither does this one
		}
		i := slices.IndexFunc(parent.targets.Delegations.Roles, func(d tuf.DelegatedRole) bool { return d.Name == name })
		if i < 0 {
			continue // not delegated
		}
		dr := parent.targets.Delegations.Roles[i]
		if _, ok := td.snapshot.Meta[name]; !ok {
			continue // delegated but never published: it has signed nothing
		}
		prev := old
		if !parent.reused {
			prev = nil // the parent changed, so the delegation's keys may have too
		}
		rd, err := v.loadTargets(ctx, gun, registry, name, td.snapshot, parent.targets.Delegations.Keys, dr.KeyIDs, dr.Threshold, prev, seen, now, pending[name])
		if err != nil {
			return nil, nil, err
		}
		rd.chain = append(slices.Clip(parent.chain), dr)
		td.roles[name] = rd
		td.expires = earliest(td.expires, rd.targets.Expires)
	}
	td.fetchedAt = now
	return td, nil, nil
}

// earlyFetches are the downloads a cold start begins together with root.json,
// before anything vouches for them.
type earlyFetches struct {
	timestamp *prefetch[[]byte]
	snapshot  *prefetch[[]byte]
}

// pinnedSnapshot returns the early snapshot.json when it is the file meta
// pins, or nil (not fetched early, failed, or not that file): the caller
// then fetches it by the usual, pinned path, whose errors it reports.
func (e *earlyFetches) pinnedSnapshot(meta tuf.FileMeta) *tuf.Signed {
	if e == nil || e.snapshot == nil {
		return nil
	}
	raw, err := e.snapshot.wait()
	if err != nil || tuf.CheckFile(raw, meta) != nil {
		return nil
	}
	s, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil
	}
	return s
}

// verifyBase checks a timestamp or snapshot signature with root's keys. On
// failure it looks for a rotated root, which would explain new keys.
func (v *Verifier) verifyBase(ctx context.Context, gun, registry string, root *rootState, role string, s *tuf.Signed, now time.Time) (*rootState, error) {
	rk := root.root.Roles[role]
	_, err := s.VerifySignatures(root.root.Keys, rk.KeyIDs, rk.Threshold)
	if err == nil {
		return nil, nil
	}
	rotated, rerr := v.rotateRoot(ctx, gun, registry, root, nil, now)
	if rerr != nil {
		return nil, rerr
	}
	if rotated != nil {
		return rotated, nil
	}
	return nil, untrusted(err, "%s of %s is not signed by its keys", role, gun)
}

// fetchPinned downloads a file whose length and hashes are signed in meta.
func (v *Verifier) fetchPinned(ctx context.Context, gun, registry, role string, meta tuf.FileMeta) (*tuf.Signed, error) {
	if meta.Length <= 0 || meta.Length > v.maxMeta {
		return nil, untrusted(nil, "%s of %s: signed length %d is outside 1..%d", role, gun, meta.Length, v.maxMeta)
	}
	raw, err := v.fetch.fetchRole(ctx, gun, registry, role, meta.Length)
	if errors.Is(err, errNotFound) {
		return nil, untrusted(nil, "%s of %s is listed in the snapshot but missing on %s", role, gun, v.fetch.base)
	}
	if err != nil {
		return nil, err
	}
	if err := tuf.CheckFile(raw, meta); err != nil {
		return nil, untrusted(err, "%s of %s does not match its signed hash", role, gun)
	}
	s, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil, untrusted(err, "%s of %s", role, gun)
	}
	return s, nil
}

// prefetchTargets starts downloading targets.json and the delegations on
// the way to the counted roles that snap lists and old cannot supply, when
// there are at least two (one alone gains nothing from a goroutine). stop
// ends the downloads still running.
func (v *Verifier) prefetchTargets(ctx context.Context, gun, registry string, snap *tuf.Snapshot, old *trustData) (pending map[string]*prefetch[*tuf.Signed], stop func()) {
	need := make([]string, 0, 8)
	add := func(name string) {
		if _, listed := snap.Meta[name]; listed && !reusable(old, snap, name) {
			need = append(need, name)
		}
	}
	add(tuf.RoleTargets)
	for _, name := range v.load {
		add(name)
	}
	if len(need) < 2 {
		return nil, func() {}
	}
	batch := newPrefetches(ctx)
	pending = make(map[string]*prefetch[*tuf.Signed], len(need))
	for _, name := range need {
		meta := snap.Meta[name]
		pending[name] = start(batch, func(ctx context.Context) (*tuf.Signed, error) {
			return v.fetchPinned(ctx, gun, registry, name, meta)
		})
	}
	return pending, batch.stop
}

// reusable reports whether old's verified copy of role name may stand: the
// snapshot pins the same file and, for a delegation, every role above it
// is unchanged too (a changed parent may have changed the delegation's
// keys). It is the rule loadTargets applies, decided before any download.
func reusable(old *trustData, snap *tuf.Snapshot, name string) bool {
	if old == nil {
		return false
	}
	for {
		prev := old.roles[name]
		meta, ok := snap.Meta[name]
		if !ok || prev == nil || !tuf.SameFile(prev.meta, meta) {
			return false
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 { // "targets", the top
			return true
		}
		name = name[:i]
	}
}

// loadTargets returns the verified targets role name, reusing old's copy
// when the snapshot still pins the same file under the same root. pending,
// when not nil, is its download already under way.
func (v *Verifier) loadTargets(ctx context.Context, gun, registry, name string, snap *tuf.Snapshot, keys map[string]tuf.Key, keyIDs []string, threshold int, old *trustData, seen map[string]int, now time.Time, pending *prefetch[*tuf.Signed]) (*roleData, error) {
	meta, ok := snap.Meta[name]
	if !ok {
		return nil, untrusted(nil, "snapshot of %s does not list %s", gun, name)
	}
	if old != nil {
		if prev := old.roles[name]; prev != nil && tuf.SameFile(prev.meta, meta) {
			if err := checkFresh(gun, name, &prev.targets.Common, seen, now); err != nil {
				return nil, err
			}
			return &roleData{meta: meta, targets: prev.targets, reused: true}, nil
		}
	}
	var s *tuf.Signed
	var err error
	if pending != nil {
		s, err = pending.wait()
	} else {
		s, err = v.fetchPinned(ctx, gun, registry, name, meta)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.VerifySignatures(keys, keyIDs, threshold); err != nil {
		return nil, untrusted(err, "%s of %s is not signed by its keys", name, gun)
	}
	var t tuf.Targets
	if err := v.decode(gun, name, s, tuf.TypeTargets, &t, &t.Common, seen, now); err != nil {
		return nil, err
	}
	return &roleData{meta: meta, targets: &t}, nil
}

func (v *Verifier) decode(gun, role string, s *tuf.Signed, typ string, out tuf.Body, c *tuf.Common, seen map[string]int, now time.Time) error {
	if err := s.Decode(typ, out); err != nil {
		return untrusted(err, "%s of %s", role, gun)
	}
	return checkFresh(gun, role, c, seen, now)
}

// checkFresh rejects expired metadata and versions older than seen before.
func checkFresh(gun, role string, c *tuf.Common, seen map[string]int, now time.Time) error {
	if !now.Before(c.Expires) {
		return untrusted(nil, "%s of %s expired at %s; %s", role, gun, c.Expires.UTC().Format(time.RFC3339), resignHint(role))
	}
	if c.Version < seen[role] {
		return untrusted(nil, "%s of %s: version %d is older than version %d seen before (rollback)", role, gun, c.Version, seen[role])
	}
	return nil
}

// resignHint says who can renew expired metadata of role.
func resignHint(role string) string {
	switch role {
	case tuf.RoleTimestamp, tuf.RoleSnapshot:
		return "the notary server (or the holder of the " + role + " key) must re-sign it"
	case tuf.RoleTargets:
		return "the repository owner must re-sign it (`docker trust sign` does)"
	}
	return "sign again with a key of " + role + " to renew it"
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
