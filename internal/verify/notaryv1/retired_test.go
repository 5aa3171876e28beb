package notaryv1

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRetiredServers(t *testing.T) {
	cut := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		server  string
		now     time.Time
		warning string // substring; "" = no warning
	}{
		{"https://notary.docker.io", cut.Add(-time.Hour), "will be retired on 2026-12-08"},
		{"https://NOTARY.docker.io.:443", cut, "is retired on 2026-12-08"},
		{"https://myregistry.azurecr.io", cut, ""},
		{"https://notary.docker.io.evil.example", cut, ""},
	} {
		u, err := url.Parse(tc.server)
		if err != nil {
			t.Fatal(err)
		}
		v := &Verifier{cfg: &settings{server: u}, now: func() time.Time { return tc.now }}
		ws := v.Warnings()
		if tc.warning == "" {
			if len(ws) != 0 {
				t.Errorf("%s: warnings %q, want none", tc.server, ws)
			}
			continue
		}
		if len(ws) != 1 || !strings.Contains(ws[0], tc.warning) {
			t.Errorf("%s at %s: warnings %q, want one containing %q", tc.server, tc.now, ws, tc.warning)
		}
		base := errors.New("dial tcp: connection refused")
		got := v.explainRetired(base)
		if !errors.Is(got, base) {
			t.Errorf("explainRetired lost the cause: %v", got)
		}
		if retired := !tc.now.Before(cut); retired != strings.Contains(got.Error(), "is retired") {
			t.Errorf("%s at %s: explained error %q", tc.server, tc.now, got)
		}
	}
}
