package notaryv1

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// retiredServer is a notary service that its operator has switched off.
type retiredServer struct {
	host    string
	retired time.Time
	advice  string
}

// Docker Hub's notary service (the server `docker trust` talks to for
// docker.io images) shut down on 2026-12-08. A verifier pointed at it can
// only fail from then on; saying so beats a generic connection error.
var retiredServers = []retiredServer{
	{
		host:    "notary.docker.io",
		retired: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC),
		advice:  "re-sign with cosign or Notation and verify with those verifiers (see the README's migration guide)",
	},
}

func retiredFor(u *url.URL) *retiredServer {
	if u == nil {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	for i := range retiredServers {
		if retiredServers[i].host == host {
			return &retiredServers[i]
		}
	}
	return nil
}

func (r *retiredServer) message(now time.Time) string {
	verb := "is retired"
	if now.Before(r.retired) {
		verb = "will be retired"
	}
	return fmt.Sprintf("the notary server %s %s on %s: %s", r.host, verb, r.retired.Format("2006-01-02"), r.advice)
}

// Warnings says what is wrong with the configuration without making it
// invalid: a server that is (or is about to be) switched off.
func (v *Verifier) Warnings() []string {
	if r := retiredFor(v.cfg.server); r != nil {
		return []string{r.message(v.now())}
	}
	return nil
}

// explainRetired adds the retirement to a failure to reach a retired server,
// so the deny message names the cause instead of a connection error.
func (v *Verifier) explainRetired(err error) error {
	if err == nil {
		return nil
	}
	if r := retiredFor(v.cfg.server); r != nil && !v.now().Before(r.retired) {
		return fmt.Errorf("%w (%s)", err, r.message(v.now()))
	}
	return err
}
