package dct

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// cliTimeout bounds one notary CLI invocation.
const cliTimeout = 60 * time.Second

// passphrase protects every key the harness creates; it is throwaway.
const passphrase = "harness-passphrase-0"

// Signer drives the real notary CLI the way `docker trust` does: the same
// roles, the same server-managed snapshot key, delegations named
// targets/releases and targets/<signer>.
type Signer struct {
	bin      string
	server   string
	caFile   string
	dir      string
	trustDir string

	// mu serialises CLI runs: they share the trust directory's key store.
	mu   sync.Mutex
	keys map[string]*DelegationKey
	// signed remembers what Sign put into the targets role, per GUN and
	// tag, so Restore can publish it again.
	signed map[string]map[string]Target
}

// DelegationKey is a delegate's ECDSA key as `docker trust signer add` makes it.
type DelegationKey struct {
	Name string
	// PublicPEMFile is the public key given to `notary delegation add`.
	PublicPEMFile string
	// KeyID is the Notary key ID of the public key, as it appears in the
	// targets role's delegation.
	KeyID string
}

// Target is one line of `notary list`.
type Target struct {
	Name   string
	Digest string // "sha256:<hex>"
	Size   int64
	Role   string
}

// NewSignerAt returns a Signer with its trust directory under dir, talking to
// the notary server at serverURL that presents a certificate from caFile.
func NewSignerAt(serverURL, caFile, dir string) (*Signer, error) {
	bin, err := LookBinary("notary")
	if err != nil {
		return nil, fmt.Errorf("notary signer: %w", err)
	}
	s := &Signer{
		bin:      bin,
		server:   serverURL,
		caFile:   caFile,
		dir:      dir,
		trustDir: filepath.Join(dir, "trust"),
		keys:     map[string]*DelegationKey{},
		signed:   map[string]map[string]Target{},
	}
	for _, d := range []string{s.trustDir, filepath.Join(dir, "delegation-keys")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("notary signer: %w", err)
		}
	}
	return s, nil
}

// NewSigner is NewSignerAt for tests, with a temp dir, against srv.
func NewSigner(t testing.TB, srv *NotaryServer) *Signer {
	t.Helper()
	RequireBinaries(t, "notary")
	s, err := NewSignerAt(srv.URL(), srv.CAFile(), t.TempDir())
	if err != nil {
		skipOrFatal(t, err)
	}
	return s
}

// TrustDir is the notary CLI's trust directory (private keys, TUF cache).
func (s *Signer) TrustDir() string { return s.trustDir }

// run executes one CLI command against the server and returns its output;
// a non-zero exit is an error that carries the output.
func (s *Signer) run(args ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runLocked(args...)
}

func (s *Signer) runLocked(args ...string) ([]byte, error) {
	return s.runInput("", args...)
}

// runInput is runLocked with answer on stdin (for confirmation prompts).
// Some refusals ("Aborting action.") exit 0, so the output is checked too.
func (s *Signer) runInput(answer string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append([]string{"-s", s.server, "-d", s.trustDir, "--tlscacert", s.caFile}, args...)
	cmd := exec.CommandContext(ctx, s.bin, full...)
	cmd.Env = append(os.Environ(),
		"HOME="+s.dir,
		"NOTARY_ROOT_PASSPHRASE="+passphrase,
		"NOTARY_TARGETS_PASSPHRASE="+passphrase,
		"NOTARY_SNAPSHOT_PASSPHRASE="+passphrase,
		"NOTARY_DELEGATION_PASSPHRASE="+passphrase,
	)
	// Without an answer stdin is /dev/null: a prompt must fail, not hang.
	if answer != "" {
		cmd.Stdin = strings.NewReader(answer)
	}
	out, err := cmd.CombinedOutput()
	if err == nil && bytes.Contains(out, []byte("Aborting action")) {
		err = errors.New("aborted")
	}
	if err != nil {
		return out, fmt.Errorf("notary %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Init creates the repository gun with a fresh root key, moves the snapshot
// key to the server (as docker does) and publishes it.
func (s *Signer) Init(gun string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, args := range [][]string{
		{"init", gun},
		{"publish", gun},
		{"key", "rotate", gun, "snapshot", "-r"},
	} {
		if _, err := s.runLocked(args...); err != nil {
			return fmt.Errorf("init %s: %w", gun, err)
		}
	}
	return nil
}

// Sign records tag → digest (a "sha256:<hex>" manifest digest of size bytes)
// in the given roles ("targets" when none) and publishes, as `docker trust
// sign` does with addhash semantics.
func (s *Signer) Sign(gun, tag, digest string, size int64, roles ...string) error {
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexDigest) != 64 {
		return fmt.Errorf("sign %s:%s: digest %q is not sha256:<64 hex>", gun, tag, digest)
	}
	args := []string{"addhash", gun, tag, strconv.FormatInt(size, 10), "--sha256", hexDigest}
	if len(roles) > 0 {
		args = append(args, "-r", strings.Join(roles, ","))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.runLocked(args...); err != nil {
		return fmt.Errorf("sign %s:%s: %w", gun, tag, err)
	}
	if _, err := s.runLocked("publish", gun); err != nil {
		return fmt.Errorf("sign %s:%s: %w", gun, tag, err)
	}
	if len(roles) == 0 || (len(roles) == 1 && roles[0] == "targets") {
		if s.signed[gun] == nil {
			s.signed[gun] = map[string]Target{}
		}
		s.signed[gun][tag] = Target{Name: tag, Digest: digest, Size: size, Role: "targets"}
	}
	return nil
}

// RemoveTarget deletes tag from the given roles ("targets" when none) and
// publishes.
func (s *Signer) RemoveTarget(gun, tag string, roles ...string) error {
	args := []string{"remove", gun, tag}
	if len(roles) > 0 {
		args = append(args, "-r", strings.Join(roles, ","))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.runLocked(args...); err != nil {
		return fmt.Errorf("remove %s:%s: %w", gun, tag, err)
	}
	if _, err := s.runLocked("publish", gun); err != nil {
		return fmt.Errorf("remove %s:%s: %w", gun, tag, err)
	}
	if len(roles) == 0 || slices.Contains(roles, "targets") {
		delete(s.signed[gun], tag)
	}
	return nil
}

// RotateKey replaces the key of role ("root", "targets", "snapshot" or
// "timestamp") with a new one and publishes the new root; serverManaged
// asks the notary server to hold the new key (snapshot and timestamp only).
func (s *Signer) RotateKey(gun, role string, serverManaged bool) error {
	args := []string{"key", "rotate", gun, role}
	if serverManaged {
		args = append(args, "-r")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Root rotation asks for confirmation on stdin.
	if _, err := s.runInput("yes\n", args...); err != nil {
		return fmt.Errorf("rotate %s key of %s: %w", role, gun, err)
	}
	return nil
}

// Delete removes gun's trust data from the server and the local cache
// (`notary delete --remote`); its keys stay in the trust directory.
func (s *Signer) Delete(gun string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.runLocked("delete", gun, "--remote"); err != nil {
		return fmt.Errorf("delete %s: %w", gun, err)
	}
	delete(s.signed, gun)
	return nil
}

// AddDelegation adds role (e.g. "targets/releases") to gun with the key of
// signerName, generating that key on first use, and publishes. The private
// key is installed in the trust directory so Sign can sign as that role.
func (s *Signer) AddDelegation(gun, role, signerName string) error {
	return s.addDelegations(gun, []string{role}, signerName)
}

// AddSigner does what `docker trust signer add NAME REPO` does: it adds the
// signer's key to targets/releases and to targets/NAME.
func (s *Signer) AddSigner(gun, signerName string) error {
	return s.addDelegations(gun, []string{"targets/releases", "targets/" + signerName}, signerName)
}

func (s *Signer) addDelegations(gun string, roles []string, signerName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := s.delegationKeyLocked(signerName)
	if err != nil {
		return fmt.Errorf("add delegation %v to %s: %w", roles, gun, err)
	}
	for _, role := range roles {
		if _, err := s.runLocked("delegation", "add", gun, role, key.PublicPEMFile, "--all-paths"); err != nil {
			return fmt.Errorf("add delegation %s to %s: %w", role, gun, err)
		}
	}
	if _, err := s.runLocked("publish", gun); err != nil {
		return fmt.Errorf("add delegation %v to %s: %w", roles, gun, err)
	}
	return nil
}

// DelegationKey returns signerName's key, generating it on first use.
func (s *Signer) DelegationKey(signerName string) (*DelegationKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delegationKeyLocked(signerName)
}

func (s *Signer) delegationKeyLocked(signerName string) (*DelegationKey, error) {
	if k, ok := s.keys[signerName]; ok {
		return k, nil
	}
	prefix := filepath.Join(s.dir, "delegation-keys", signerName)
	if _, err := s.runLocked("key", "generate", "ecdsa", "--role", signerName, "-o", prefix); err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", signerName, err)
	}
	pubFile, privFile := prefix+".pem", prefix+"-key.pem"
	pubPEM, err := os.ReadFile(pubFile)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", signerName, err)
	}
	keyID, err := ecdsaKeyID(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", signerName, err)
	}
	// `notary key import` refuses the encrypted key that `key generate -o`
	// writes, so install it where the key store looks for it by ID.
	priv, err := os.ReadFile(privFile)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", signerName, err)
	}
	privDir := filepath.Join(s.trustDir, "private")
	if err := os.MkdirAll(privDir, 0o700); err != nil {
		return nil, fmt.Errorf("install key for %s: %w", signerName, err)
	}
	if err := os.WriteFile(filepath.Join(privDir, keyID+".key"), priv, 0o600); err != nil {
		return nil, fmt.Errorf("install key for %s: %w", signerName, err)
	}
	k := &DelegationKey{Name: signerName, PublicPEMFile: pubFile, KeyID: keyID}
	s.keys[signerName] = k
	return k, nil
}

// ecdsaKeyID computes Notary's ID for a plain (non-certificate) ECDSA public
// key: the sha256 of its canonical JSON, whose keys are sorted, as
// encoding/json emits struct fields declared in that order.
func ecdsaKeyID(pubPEM []byte) (string, error) {
	block, _ := pem.Decode(pubPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return "", fmt.Errorf("no PUBLIC KEY PEM block")
	}
	type keyval struct {
		Private []byte `json:"private"`
		Public  []byte `json:"public"`
	}
	b, err := json.Marshal(struct {
		KeyType string `json:"keytype"`
		KeyVal  keyval `json:"keyval"`
	}{"ecdsa", keyval{Public: block.Bytes}})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// List returns the targets of gun as `notary list` shows them (for roles,
// or the default view when none).
func (s *Signer) List(gun string, roles ...string) ([]Target, error) {
	args := []string{"list", gun}
	if len(roles) > 0 {
		args = append(args, "-r", strings.Join(roles, ","))
	}
	out, err := s.run(args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", gun, err)
	}
	return parseList(out)
}

// parseList reads the table `notary list` prints:
//
//	NAME    DIGEST    SIZE (BYTES)    ROLE
//	----    ------    ------------    ----
//	v1      <hex>     1234            targets
func parseList(out []byte) ([]Target, error) {
	var ts []Target
	header := true
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if header {
			header = !(len(f) > 0 && strings.HasPrefix(f[0], "---"))
			continue
		}
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("parse notary list line %q", sc.Text())
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse notary list line %q: %w", sc.Text(), err)
		}
		ts = append(ts, Target{Name: f[0], Digest: "sha256:" + f[1], Size: size, Role: f[3]})
	}
	return ts, sc.Err()
}

// RootKeyPEM fetches gun's root.json from the server and returns the root
// role's ecdsa-x509 certificate (PEM) and its key ID: what a verifier pins.
func (s *Signer) RootKeyPEM(gun string) (certPEM []byte, keyID string, err error) {
	raw, err := s.FetchMetadata(gun, "root")
	if err != nil {
		return nil, "", err
	}
	var root struct {
		Signed struct {
			Keys map[string]struct {
				KeyType string `json:"keytype"`
				KeyVal  struct {
					Public string `json:"public"`
				} `json:"keyval"`
			} `json:"keys"`
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(raw, &root); err != nil {
		return nil, "", fmt.Errorf("root key of %s: decode root.json: %w", gun, err)
	}
	ids := root.Signed.Roles["root"].KeyIDs
	if len(ids) != 1 {
		return nil, "", fmt.Errorf("root key of %s: root role has %d keys, want 1", gun, len(ids))
	}
	key, ok := root.Signed.Keys[ids[0]]
	if !ok || key.KeyType != "ecdsa-x509" {
		return nil, "", fmt.Errorf("root key of %s: key %s missing or not ecdsa-x509 (%q)", gun, ids[0], key.KeyType)
	}
	pemBytes, err := base64.StdEncoding.DecodeString(key.KeyVal.Public)
	if err != nil {
		return nil, "", fmt.Errorf("root key of %s: decode key: %w", gun, err)
	}
	if b, _ := pem.Decode(pemBytes); b == nil || b.Type != "CERTIFICATE" {
		return nil, "", fmt.Errorf("root key of %s: public key is not a PEM certificate", gun)
	}
	return pemBytes, ids[0], nil
}

// WriteRootKeyPEM writes gun's root certificate to a file in the signer's
// directory and returns its path, for verifier configs that take files.
func (s *Signer) WriteRootKeyPEM(gun string) (string, error) {
	p, _, err := s.RootKeyPEM(gun)
	if err != nil {
		return "", err
	}
	name := "root-" + strings.NewReplacer("/", "_", ":", "_").Replace(gun) + ".pem"
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, p, 0o644); err != nil {
		return "", fmt.Errorf("write root key of %s: %w", gun, err)
	}
	return path, nil
}

// FetchMetadata GETs /v2/<gun>/_trust/tuf/<role>.json from the server.
func (s *Signer) FetchMetadata(gun, role string) ([]byte, error) {
	client, err := s.httpClient()
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: %w", gun, role, err)
	}
	u := s.server + "/v2/" + gun + "/_trust/tuf/" + role + ".json"
	resp, err := client.Get(u)
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: %w", gun, role, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 10<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch %s %s: %w", gun, role, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s %s: HTTP %d: %s", gun, role, resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

// Versions are the metadata versions a server serves for a repository.
type Versions map[string]int

// Versions fetches the current version of root, timestamp, snapshot and
// targets of gun from the server.
func (s *Signer) Versions(gun string) (Versions, error) {
	v := Versions{}
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		raw, err := s.FetchMetadata(gun, role)
		if err != nil {
			return nil, err
		}
		var m struct {
			Signed struct {
				Version int `json:"version"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("versions of %s: decode %s: %w", gun, role, err)
		}
		v[role] = m.Signed.Version
	}
	return v, nil
}

// Backup is what Restore needs to bring a repository back: the raw root and
// targets metadata and the versions clients have seen.
type Backup struct {
	GUN      string
	Root     []byte
	Targets  []byte
	Versions Versions
}

// Backup saves gun's current root.json and targets.json and its versions;
// take it before stopping a notary server whose storage is in memory.
func (s *Signer) Backup(gun string) (*Backup, error) {
	v, err := s.Versions(gun)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", gun, err)
	}
	b := &Backup{GUN: gun, Versions: v}
	if b.Root, err = s.FetchMetadata(gun, "root"); err != nil {
		return nil, fmt.Errorf("backup %s: %w", gun, err)
	}
	if b.Targets, err = s.FetchMetadata(gun, "targets"); err != nil {
		return nil, fmt.Errorf("backup %s: %w", gun, err)
	}
	return b, nil
}

// Restore brings a repository back after its notary server lost its memory
// storage (Stop then Start), emulating a server with persistent storage: it
// uploads the saved root.json and targets.json byte for byte, then publishes
// the targets Sign recorded again until the timestamp, snapshot and targets
// versions are at least the saved ones, so clients that saw the old metadata
// do not take the new one for a rollback. Delegations are not restored.
//
// It needs a server started with ECDSAServerKeys: notary-signer keeps
// running across the restart and still holds the timestamp and snapshot keys
// that the saved root.json names.
func (s *Signer) Restore(b *Backup) error {
	gun := b.GUN
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.upload(gun, map[string][]byte{"root": b.Root, "targets": b.Targets}); err != nil {
		return fmt.Errorf("restore %s: %w", gun, err)
	}
	// The CLI's cache would make it refuse the server's new, lower
	// timestamp and snapshot versions as a rollback; keep only root.json.
	meta := filepath.Join(s.trustDir, "tuf", filepath.FromSlash(gun), "metadata")
	entries, err := os.ReadDir(meta)
	if err != nil {
		return fmt.Errorf("restore %s: %w", gun, err)
	}
	for _, e := range entries {
		if e.Name() != "root.json" {
			if err := os.RemoveAll(filepath.Join(meta, e.Name())); err != nil {
				return fmt.Errorf("restore %s: %w", gun, err)
			}
		}
	}
	tags := slices.Sorted(maps.Keys(s.signed[gun]))
	if len(tags) == 0 {
		return fmt.Errorf("restore %s: nothing signed into targets to publish again", gun)
	}
	const maxRounds = 64
	for round := 0; round < maxRounds; round++ {
		got, err := s.Versions(gun)
		if err != nil {
			return fmt.Errorf("restore %s: %w", gun, err)
		}
		caughtUp := true
		for role, want := range b.Versions {
			if got[role] < want {
				caughtUp = false
			}
		}
		if caughtUp {
			return nil
		}
		for _, tag := range tags {
			t := s.signed[gun][tag]
			if _, err := s.runLocked("addhash", gun, tag, strconv.FormatInt(t.Size, 10), "--sha256", strings.TrimPrefix(t.Digest, "sha256:")); err != nil {
				return fmt.Errorf("restore %s: %w", gun, err)
			}
		}
		if _, err := s.runLocked("publish", gun); err != nil {
			return fmt.Errorf("restore %s: %w", gun, err)
		}
	}
	return fmt.Errorf("restore %s: versions still below %v after %d publishes", gun, b.Versions, maxRounds)
}

// upload POSTs metadata files to the server the way the notary client
// publishes: one multipart form, one "files" part per role.
func (s *Signer) upload(gun string, files map[string][]byte) error {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, role := range slices.Sorted(maps.Keys(files)) {
		part, err := w.CreateFormFile("files", role)
		if err != nil {
			return err
		}
		if _, err := part.Write(files[role]); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	client, err := s.httpClient()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, s.server+"/v2/"+gun+"/_trust/tuf/", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("upload metadata: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upload metadata: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// httpClient talks to the notary server directly, trusting only its CA.
func (s *Signer) httpClient() (*http.Client, error) {
	ca, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: newPool(ca), MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}, nil
}
