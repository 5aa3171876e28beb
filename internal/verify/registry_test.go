package verify

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func testScheme(typ string) Scheme {
	return Scheme{
		Type:   typ,
		Config: func() any { return new(struct{}) },
		New:    func(string, any, Deps) (Verifier, error) { return nil, errors.New("unused") },
	}
}

func TestRegistry(t *testing.T) {
	r, err := NewRegistry(testScheme("notaryv1"), testScheme("acrSignedTag"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Types(); !slices.Equal(got, []string{"acrSignedTag", "notaryv1"}) {
		t.Fatalf("Types() = %v", got)
	}
	if _, ok := r.Lookup("notaryv1"); !ok {
		t.Fatal("Lookup(notaryv1) found nothing")
	}
	if _, ok := r.Lookup("cosign"); ok {
		t.Fatal("Lookup(cosign) found a scheme never registered")
	}

	bad := []struct {
		name   string
		scheme Scheme
		want   string
	}{
		{"twice", testScheme("notaryv1"), "registered twice"},
		{"no type", testScheme(""), "want a name"},
		{"type with a dot", testScheme("a.b"), "want a name"},
		{"collides with a field", testScheme("deprecated"), "collides"},
		{"no constructor", Scheme{Type: "x", Config: func() any { return new(int) }}, "Config and New are required"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Register(testScheme("fresh"), tc.scheme)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Register: %v, want an error containing %q", err, tc.want)
			}
			if _, ok := r.Lookup("fresh"); ok {
				t.Fatal("a failed Register added the valid scheme before the bad one")
			}
		})
	}
	if _, err := NewRegistry(testScheme("x"), testScheme("x")); !errors.Is(err, ErrDuplicateScheme) {
		t.Fatalf("duplicate in one call: %v", err)
	}
}

func TestRegisterPanicsOnBadScheme(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Register of an incomplete scheme did not panic")
		}
		if len(Registered().Types()) != 0 {
			t.Fatalf("the process registry holds %v", Registered().Types())
		}
	}()
	Register(Scheme{Type: "incomplete"})
}
