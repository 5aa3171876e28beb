package notation

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSPServer is an OCSP responder for a CA (RFC 6960, GET and POST), signing
// with the CA's own key; the status of a certificate follows CA.Revoke.
// Down makes it answer 503.
type OCSPServer struct {
	srv      *httptest.Server
	ca       *CA
	down     atomic.Bool
	requests atomic.Int64
}

// StartOCSPServer serves OCSP for ca's certificates.
func StartOCSPServer(ca *CA) *OCSPServer {
	s := &OCSPServer{ca: ca}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *OCSPServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.down.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	var der []byte
	var err error
	switch r.Method {
	case http.MethodPost:
		der, err = io.ReadAll(io.LimitReader(r.Body, 1<<16))
	case http.MethodGet:
		var p string
		if p, err = url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/")); err == nil {
			der, err = base64.StdEncoding.DecodeString(p)
		}
	}
	if err != nil {
		w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	s.ca.mu.Lock()
	for _, e := range s.ca.revoked {
		if e.SerialNumber.Cmp(req.SerialNumber) == 0 {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, e.RevocationTime, ocsp.KeyCompromise
		}
	}
	s.ca.mu.Unlock()
	resp, err := ocsp.CreateResponse(s.ca.Cert, s.ca.Cert, tmpl, s.ca.Key)
	if err != nil {
		w.Write(ocsp.InternalErrorErrorResponse)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

// URL is the responder's address, for a certificate's OCSPServer.
func (s *OCSPServer) URL() string { return s.srv.URL }

// SetDown makes the responder fail (true) or answer again (false).
func (s *OCSPServer) SetDown(down bool) { s.down.Store(down) }

// Requests counts OCSP requests.
func (s *OCSPServer) Requests() int64 { return s.requests.Load() }

// Close stops the responder.
func (s *OCSPServer) Close() { s.srv.Close() }
