package notaryfake

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// Repo is one GUN's trust data on the fake server. Change it with the
// methods below, then call Publish to sign and serve the result.
type Repo struct {
	GUN string
	s   *Server

	mu        sync.Mutex
	roles     map[string]*role
	published map[string][]byte
	rootByVer map[int][]byte // every published root, served as <n>.root.json
	overrides map[string][]byte
	tamper    map[[2]string]func(*tuf.FileMeta)
}

type role struct {
	name         string
	keys         []*Key // keys listed for the role
	threshold    int
	signWith     []*Key // nil: keys
	version      int
	forced       bool // version set explicitly for the next publish
	expires      time.Time
	targets      map[string]tuf.FileMeta
	paths        []string // delegations only
	hashPrefixes []string
	lastBody     []byte
	dirty        bool
}

type repoOptions struct {
	keyType     string
	rootKeyType string
}

// RepoOption configures NewRepo.
type RepoOption func(*repoOptions)

// KeyType sets the key type of the targets, snapshot and timestamp keys
// ("ecdsa" by default; "ed25519" or "rsa").
func KeyType(typ string) RepoOption { return func(o *repoOptions) { o.keyType = typ } }

// RootKeyType sets the root key type ("ecdsa-x509" by default, or "rsa-x509").
func RootKeyType(typ string) RepoOption { return func(o *repoOptions) { o.rootKeyType = typ } }

// NewRepo creates and publishes an empty repository for gun.
func (s *Server) NewRepo(gun string, opts ...RepoOption) *Repo {
	o := repoOptions{keyType: tuf.KeyTypeECDSA, rootKeyType: tuf.KeyTypeECDSAX509}
	for _, opt := range opts {
		opt(&o)
	}
	now := time.Now()
	r := &Repo{GUN: gun, s: s, roles: map[string]*role{}, published: map[string][]byte{}, rootByVer: map[int][]byte{}, overrides: map[string][]byte{}, tamper: map[[2]string]func(*tuf.FileMeta){}}
	mk := func(name, typ string, life time.Duration) {
		r.roles[name] = &role{name: name, keys: []*Key{GenerateKey(typ, gun)}, threshold: 1, version: 1, expires: now.Add(life), targets: map[string]tuf.FileMeta{}, dirty: true}
	}
	mk(tuf.RoleRoot, o.rootKeyType, 10*365*24*time.Hour)
	mk(tuf.RoleTargets, o.keyType, 3*365*24*time.Hour)
	mk(tuf.RoleSnapshot, o.keyType, 3*365*24*time.Hour)
	mk(tuf.RoleTimestamp, o.keyType, 14*24*time.Hour)
	s.mu.Lock()
	s.repos[gun] = r
	s.mu.Unlock()
	r.Publish()
	return r
}

func (r *Repo) role(name string) *role {
	ro, ok := r.roles[name]
	if !ok {
		panic(fmt.Sprintf("notaryfake: %s has no role %s", r.GUN, name))
	}
	return ro
}

func parentOf(name string) string { return name[:strings.LastIndexByte(name, '/')] }

func isBase(name string) bool {
	return name == tuf.RoleRoot || name == tuf.RoleTargets || name == tuf.RoleSnapshot || name == tuf.RoleTimestamp
}

// markKeysChanged marks whoever publishes name's keys as changed.
func (r *Repo) markKeysChanged(name string) {
	if isBase(name) {
		r.roles[tuf.RoleRoot].dirty = true
	} else {
		r.role(parentOf(name)).dirty = true
	}
}

// AddTarget signs tag → digest ("sha256:<hex>") of length bytes in role
// ("targets" or a delegation).
func (r *Repo) AddTarget(roleName, tag, digest string, length int64) {
	h, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil || len(h) != 32 {
		panic(fmt.Sprintf("notaryfake: bad digest %q", digest))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	ro.targets[tag] = tuf.FileMeta{Length: length, Hashes: map[string][]byte{"sha256": h}}
	ro.dirty = true
}

// RemoveTarget removes tag from role.
func (r *Repo) RemoveTarget(roleName, tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	delete(ro.targets, tag)
	ro.dirty = true
}

// AddDelegation delegates name (e.g. "targets/releases") from its parent
// role to a new key of type typ, allowed to sign paths (prefixes; "" = all).
func (r *Repo) AddDelegation(name, typ string, paths ...string) *Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.roles[parentOf(name)]; !ok {
		panic(fmt.Sprintf("notaryfake: parent of %s does not exist", name))
	}
	k := GenerateKey(typ, name)
	r.roles[name] = &role{name: name, keys: []*Key{k}, threshold: 1, version: 1, expires: time.Now().Add(3 * 365 * 24 * time.Hour),
		targets: map[string]tuf.FileMeta{}, paths: paths, dirty: true}
	r.markKeysChanged(name)
	return k
}

// SetPathHashPrefixes restricts a delegation by hash prefixes instead of paths.
func (r *Repo) SetPathHashPrefixes(name string, prefixes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(name)
	ro.paths, ro.hashPrefixes = nil, prefixes
	r.markKeysChanged(name)
}

// AddKey adds another key to role's key list (e.g. for thresholds > 1) and
// signs with it too.
func (r *Repo) AddKey(roleName, typ string) *Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	k := GenerateKey(typ, r.GUN)
	ro.keys = append(ro.keys, k)
	ro.dirty = true
	r.markKeysChanged(roleName)
	return k
}

// SetThreshold changes a role's threshold as published by root or the parent.
func (r *Repo) SetThreshold(roleName string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.role(roleName).threshold = n
	r.role(roleName).dirty = true
	r.markKeysChanged(roleName)
}

// SignWith makes Publish sign role with exactly keys (which may be outside
// the role's key list); no keys restores signing with the role's own keys.
func (r *Repo) SignWith(roleName string, keys ...*Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	ro.signWith = keys
	if len(keys) == 0 {
		ro.signWith = nil
	}
	ro.dirty = true
}

// SetVersion makes the next Publish sign role with version n, even if that
// is lower than before (rollback).
func (r *Repo) SetVersion(roleName string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	ro.version, ro.forced, ro.dirty = n, true, true
}

// SetExpires sets role's expiry for the next Publish.
func (r *Repo) SetExpires(roleName string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	ro.expires, ro.dirty = t, true
}

// RotateKey replaces a role's keys with one new key of type typ. For root,
// signWithOld decides whether the old root key also signs the new root
// (a proper rotation) or not.
func (r *Repo) RotateKey(roleName, typ string, signWithOld bool) *Key {
	k := GenerateKey(typ, r.GUN)
	r.ReplaceKey(roleName, k, signWithOld)
	return k
}

// ReplaceKey replaces a role's keys with k, which the test made (for
// example a root key whose certificate names another GUN, or has expired).
// signWithOld is as for RotateKey.
func (r *Repo) ReplaceKey(roleName string, k *Key, signWithOld bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ro := r.role(roleName)
	old := ro.keys
	ro.keys, ro.signWith, ro.dirty = []*Key{k}, nil, true
	if signWithOld {
		ro.signWith = append([]*Key{k}, old...)
	}
	r.markKeysChanged(roleName)
}

// TamperMeta edits the meta entry for file `of` inside role `in`
// ("timestamp" or "snapshot") before it is signed: the signature is valid
// but the pinned hash or length is wrong.
func (r *Repo) TamperMeta(in, of string, fn func(*tuf.FileMeta)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tamper[[2]string{in, of}] = fn
	r.role(in).dirty = true
}

// Serve replaces the bytes served for role (nil restores the published file).
func (r *Repo) Serve(roleName string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if body == nil {
		delete(r.overrides, roleName)
		return
	}
	r.overrides[roleName] = body
}

// Delete stops serving role (404), e.g. a delegation listed but missing.
func (r *Repo) Delete(roleName string) { r.Serve(roleName, []byte{}) }

// RootKey returns the current root key; PublicPEM of it is a valid pin.
func (r *Repo) RootKey() *Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roles[tuf.RoleRoot].keys[0]
}

// Raw returns the published bytes of role.
func (r *Repo) Raw(roleName string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.published[roleName])
}

func (r *Repo) served(roleName string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.overrides[roleName]; ok {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	if ver, ok := strings.CutSuffix(roleName, "."+tuf.RoleRoot); ok {
		n, err := strconv.Atoi(ver)
		if err != nil {
			return nil
		}
		return r.rootByVer[n]
	}
	return r.published[roleName]
}

// Publish signs every changed role (bumping its version) and serves the result.
func (r *Repo) Publish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Delegations deepest first, then targets, root, snapshot, timestamp:
	// each file's hash must be known before the file that pins it is signed.
	var dels []string
	for name := range r.roles {
		if !isBase(name) {
			dels = append(dels, name)
		}
	}
	slices.SortFunc(dels, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, name := range append(dels, tuf.RoleTargets) {
		r.sign(r.roles[name], func(ro *role) any { return r.targetsBody(ro) })
	}
	r.sign(r.roles[tuf.RoleRoot], func(ro *role) any { return r.rootBody(ro) })
	snap := r.roles[tuf.RoleSnapshot]
	snap.dirty = true // its content is recomputed; sign only if it changed
	r.sign(snap, func(ro *role) any {
		meta := map[string]tuf.FileMeta{}
		for name := range r.roles {
			if name != tuf.RoleSnapshot && name != tuf.RoleTimestamp {
				meta[name] = r.metaFor(tuf.RoleSnapshot, name)
			}
		}
		return &tuf.Snapshot{Common: common(tuf.TypeSnapshot, ro), Meta: meta}
	})
	ts := r.roles[tuf.RoleTimestamp]
	ts.dirty = true
	r.sign(ts, func(ro *role) any {
		return &tuf.Timestamp{Common: common(tuf.TypeTimestamp, ro), Meta: map[string]tuf.FileMeta{tuf.RoleSnapshot: r.metaFor(tuf.RoleTimestamp, tuf.RoleSnapshot)}}
	})
}

func (r *Repo) metaFor(in, of string) tuf.FileMeta {
	m := tuf.MetaOf(r.published[of])
	if fn := r.tamper[[2]string{in, of}]; fn != nil {
		fn(&m)
	}
	return m
}

func common(typ string, ro *role) tuf.Common {
	return tuf.Common{Type: typ, Version: ro.version, Expires: ro.expires.UTC()}
}

func (r *Repo) rootBody(ro *role) any {
	root := &tuf.Root{Common: common(tuf.TypeRoot, ro), Keys: map[string]tuf.Key{}, Roles: map[string]tuf.RoleKeys{}}
	for _, name := range []string{tuf.RoleRoot, tuf.RoleTargets, tuf.RoleSnapshot, tuf.RoleTimestamp} {
		br := r.roles[name]
		rk := tuf.RoleKeys{KeyIDs: []string{}, Threshold: br.threshold}
		for _, k := range br.keys {
			root.Keys[k.ID] = k.Public
			rk.KeyIDs = append(rk.KeyIDs, k.ID)
		}
		root.Roles[name] = rk
	}
	return root
}

func (r *Repo) targetsBody(ro *role) any {
	t := &tuf.Targets{Common: common(tuf.TypeTargets, ro), Targets: maps.Clone(ro.targets),
		Delegations: tuf.Delegations{Keys: map[string]tuf.Key{}, Roles: []tuf.DelegatedRole{}}}
	var children []string
	for name := range r.roles {
		if tuf.IsChildRole(ro.name, name) {
			children = append(children, name)
		}
	}
	slices.Sort(children)
	for _, name := range children {
		c := r.roles[name]
		dr := tuf.DelegatedRole{Name: name, Threshold: c.threshold, KeyIDs: []string{}, Paths: c.paths, PathHashPrefixes: c.hashPrefixes}
		for _, k := range c.keys {
			t.Delegations.Keys[k.ID] = k.Public
			dr.KeyIDs = append(dr.KeyIDs, k.ID)
		}
		t.Delegations.Roles = append(t.Delegations.Roles, dr)
	}
	return t
}

// sign re-signs ro when it is dirty and its body changed (or was forced),
// bumping the version unless SetVersion chose it.
func (r *Repo) sign(ro *role, body func(*role) any) {
	if !ro.dirty {
		return
	}
	ro.dirty = false
	canon := func() []byte {
		b, err := tuf.MarshalCanonical(body(ro))
		if err != nil {
			panic(err)
		}
		return b
	}
	b := canon()
	if !ro.forced && ro.lastBody != nil {
		if bytes.Equal(b, ro.lastBody) && ro.signWith == nil {
			return
		}
		if !bytes.Equal(b, ro.lastBody) {
			ro.version++
			b = canon()
		}
	}
	ro.forced = false
	ro.lastBody = b
	keys := ro.signWith
	if keys == nil {
		keys = ro.keys
	}
	env := struct {
		Signed     json.RawMessage `json:"signed"`
		Signatures []tuf.Signature `json:"signatures"`
	}{Signed: b, Signatures: []tuf.Signature{}}
	for _, k := range keys {
		env.Signatures = append(env.Signatures, k.Sign(b))
	}
	raw, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	r.published[ro.name] = raw
	if ro.name == tuf.RoleRoot {
		r.rootByVer[ro.version] = raw
	}
}
