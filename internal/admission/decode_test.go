package admission

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeAdmissionReview(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"group":"batch","version":"v1","kind":"CronJob"},"object":{"spec":{"jobTemplate":{"spec":{"template":null}}}}}}`))
	f.Add([]byte(`null`))
	validate := newValidating(f, &fakeEngine{})
	mutate := newMutating(f, &fakeEngine{})
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := DecodeAdmissionReview(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedReview) {
				t.Fatalf("error %v does not match ErrMalformedReview", err)
			}
		} else if review.Request == nil || review.Request.UID == "" || review.Response != nil ||
			(review.APIVersion != apiVersionV1 && review.APIVersion != apiVersionV1beta1) {
			t.Fatalf("accepted an unusable review: %+v", review)
		}
		// Whatever the body, the webhooks answer 200 or 400, never 500.
		for _, h := range []http.Handler{validate, mutate} {
			rec := post(t, h, body)
			switch rec.Code {
			case http.StatusOK:
				if err != nil {
					t.Fatalf("decoder rejected the body (%v) but the webhook answered 200", err)
				}
				var out struct {
					Response *struct {
						UID string `json:"uid"`
					} `json:"response"`
				}
				if jerr := json.Unmarshal(rec.Body.Bytes(), &out); jerr != nil || out.Response == nil || out.Response.UID != string(review.Request.UID) {
					t.Fatalf("bad answer %s (%v)", rec.Body.String(), jerr)
				}
			case http.StatusBadRequest:
			default:
				t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
		}
	})
}
