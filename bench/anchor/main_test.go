package main

import (
	"io"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	var s []Sample
	for i := 1; i <= 10; i++ {
		s = append(s, Sample{Millis: float64(11 - i), Requests: int64(5 + i%3)})
	}
	got := summarize(s)
	want := Summary{N: 10, P50Millis: 5, P90Millis: 9, MeanMillis: 5.5, P50Requests: 6, MinRequests: 5, MaxRequests: 7}
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	if (summarize(nil) != Summary{}) {
		t.Fatal("empty input gives a non-zero summary")
	}
}

func TestFlagsAreChecked(t *testing.T) {
	tests := []struct {
		name string
		run  func([]string, io.Writer) error
		args []string
		want string
	}{
		{"measure needs a server", measure, []string{"--tags", "v1", "--repo", "g=id"}, "required"},
		{"measure needs a pin", measure, []string{"--server", "https://127.0.0.1:1", "--tags", "v1", "--repo", "gun-without-id"}, "GUN=ROOTCERTKEYID"},
		{"sign needs a dir", sign, []string{"--server", "https://127.0.0.1:1", "--gun", "g"}, "required"},
		{"sign needs tags", sign, []string{"--server", "https://127.0.0.1:1", "--gun", "g", "--dir", "d", "--tags", "0"}, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
