package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeIssue: whatever the body of an issue request, decoding it
// either gives a request or a problem of the client-error classes with a
// stable type and no internal text — never a panic.
func FuzzDecodeIssue(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `{"sender":"alice@example.net","ttl":"7d","uses":2,"recipients":["a@example.net"],"hide_sender":true,"owner":"u","external_ref":"r"}`,
		`{"uses":"x"}`, `{"admin":1}`, `[[[[`, "{\"owner\":\"\xff\"}", `{"ttl":"-1h"}`, `{"uses":99999999999999999999}`,
		`{"recipients":[1,2]}`, `{"sender":null}`, `{} []`, `{"recipients":{"a":1}}`, `"str"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, p := decodeIssue("board@example.org", body)
		if p == nil {
			if !utf8.Valid(body) {
				t.Fatalf("accepted a body that is not UTF-8: %q", body)
			}
			if req.List != "board@example.org" || req.Uses < 0 || (req.TTL != nil && *req.TTL < 0) {
				t.Fatalf("decoded an impossible request %+v", req)
			}
			return
		}
		switch p.Status {
		case http.StatusBadRequest, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d for %q", p.Status, body)
		}
		if !strings.HasPrefix(p.Type, ProblemTypePrefix) || p.Title == "" {
			t.Fatalf("problem without a type or title: %+v", p)
		}
		if strings.Contains(p.Detail, "json:") || strings.Contains(p.Detail, "Go struct") {
			t.Fatalf("internal text in the detail: %q", p.Detail)
		}
		if p.Status == http.StatusUnprocessableEntity && len(p.Errors) == 0 {
			t.Fatalf("a 422 without field errors: %+v", p)
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	})
}
