package apikey

import (
	"strings"
	"testing"
)

func TestGenerateCheck(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, h := Generate()
		if !Check(k) {
			t.Fatalf("Check(%q) = false", k)
		}
		if len(k) != Length || !strings.HasPrefix(k, "rmk_") {
			t.Fatalf("key %q: wrong shape", k)
		}
		if HashOf(k) != h {
			t.Fatal("hash differs")
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
	}
	k, _ := Generate()
	// Every single-character change is caught by the checksum or the
	// alphabet.
	for i := len(Prefix); i < len(k); i++ {
		b := []byte(k)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		if Check(string(b)) {
			t.Errorf("a change at %d passes the checksum", i)
		}
	}
	for _, bad := range []string{"", "rmk_", k[:len(k)-1], strings.ToUpper(k), "xyz_" + k[4:], k + "a"} {
		if Check(bad) {
			t.Errorf("Check(%q) = true", bad)
		}
	}
}

func TestScopes(t *testing.T) {
	got, err := ParseScopes("issue, READ,issue")
	if err != nil || strings.Join(got, ",") != "issue,read" {
		t.Fatalf("ParseScopes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "admin", ","} {
		if _, err := ParseScopes(bad); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
	if !Covers([]string{"*"}, "a@b") || !Covers([]string{"a@b"}, "a@b") || Covers([]string{"c@d"}, "a@b") {
		t.Error("Covers")
	}
}
