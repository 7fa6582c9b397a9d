package dsn

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorpus parses every testdata/*.eml and compares the result with the
// .json beside it: the bounce shapes of RFC 3464 and of the mail systems
// that send others, with what each must yield.
func TestCorpus(t *testing.T) {
	emls, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(emls) < 10 {
		t.Fatalf("corpus: %v, %d messages", err, len(emls))
	}
	for _, eml := range emls {
		name := strings.TrimSuffix(filepath.Base(eml), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(eml)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(eml, ".eml") + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var w Notification
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			got := Parse(bytes.NewReader(raw))
			gj, _ := json.MarshalIndent(got, "", "  ")
			wj, _ := json.MarshalIndent(w, "", "  ")
			if !bytes.Equal(gj, wj) {
				t.Errorf("got\n%s\nwant\n%s", gj, wj)
			}
		})
	}
}

func TestFindStatus(t *testing.T) {
	for in, want := range map[string]string{
		"550 5.1.1 user unknown":         "5.1.1",
		"host 10.4.4.1 said 550":         "",
		"(#4.4.1)":                       "4.4.1",
		"version 2.0.0.1":                "",
		"552-5.2.2 full":                 "5.2.2",
		"5.1.10 RESOLVER":                "5.1.10",
		"timeout 4.4.1234":               "",
		"connect to [192.0.2.1]: 4.4.1.": "4.4.1",
	} {
		if got := findStatus(in); got != want {
			t.Errorf("findStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: no input panics, and whatever is found is well formed.
func FuzzParse(f *testing.F) {
	emls, _ := filepath.Glob("testdata/*.eml")
	for _, eml := range emls {
		b, err := os.ReadFile(eml)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := Parse(bytes.NewReader(b))
		if n.Kind != Report && len(n.Recipients) > 0 {
			t.Fatalf("kind %s with recipients", n.Kind)
		}
		for _, r := range n.Recipients {
			if !strings.Contains(r.Address, "@") || !isStatus(r.Status) {
				t.Fatalf("malformed recipient %+v", r)
			}
			switch r.Action {
			case Failed, Delayed, Delivered, Relayed, Expanded:
			default:
				t.Fatalf("action %q", r.Action)
			}
		}
	})
}
