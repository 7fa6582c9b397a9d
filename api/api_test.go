package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/restrictedmail/restrictedmail/apikey"
	"github.com/restrictedmail/restrictedmail/internal/apitest"
	"github.com/restrictedmail/restrictedmail/store"
)

// TestIssueAndRead: issue (201, Location, the secret and the token file
// once, no-store), read it back without the secret, list the lists.
func TestIssueAndRead(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	key := e.fullKey()
	c := e.client(key)

	r := c.Do(t, apitest.Request{Method: "GET", Path: "/openapi.yaml", Header: map[string]string{"Authorization": ""}})
	if r.Status != 200 || !strings.Contains(string(r.Body), "openapi: 3.0.3") {
		t.Fatalf("openapi.yaml: %d", r.Status)
	}

	tok := issue(t, c, board, map[string]any{"sender": "Alice@Example.NET", "ttl": "7d", "uses": 2,
		"recipients": []string{"x@example.net", "Y@Example.com"}, "hide_sender": true, "owner": "user:42", "external_ref": "lego:17"})
	if len(tok.Token) != 32 || tok.TokenFile != "RMTOKEN"+tok.Token+"\n" {
		t.Errorf("token %q, file %q", tok.Token, tok.TokenFile)
	}
	if tok.Sender == nil || *tok.Sender != "alice@example.net" || tok.UsesAllowed != 2 || tok.Owner != "user:42" ||
		tok.ExternalRef != "lego:17" || tok.RecipientsFor != "token" || !slices.Equal(tok.Recipients, []string{"x@example.net", "Y@example.com"}) {
		t.Errorf("issued %+v", tok)
	}
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID})
	if r.Status != 200 || strings.Contains(string(r.Body), tok.Token) || strings.Contains(string(r.Body), `"token":`) {
		t.Errorf("GET token: %d %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	// An address in any form, escaped or not.
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/lists/Board%40EXAMPLE.org/tokens"})
	var page struct {
		Entries []issued `json:"entries"`
		Total   int      `json:"total"`
	}
	r.JSON(t, &page)
	if r.Status != 200 || page.Total != 1 || page.Entries[0].ID != tok.ID {
		t.Errorf("list: %d %s", r.Status, r.Body)
	}
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/lists"})
	var lists struct {
		Entries []struct {
			Address           string `json:"address"`
			DefaultRecipients int    `json:"default_recipients"`
			Tokens            struct {
				Active int `json:"active"`
			} `json:"tokens"`
		} `json:"entries"`
	}
	r.JSON(t, &lists)
	if len(lists.Entries) != 2 || lists.Entries[0].Address != board || lists.Entries[0].DefaultRecipients != 3 || lists.Entries[0].Tokens.Active != 1 {
		t.Errorf("lists: %s", r.Body)
	}
	// A key for board@ alone sees board@ alone.
	r = e.client(e.key("board-only", []string{board}, []string{apikey.ScopeRead}, nil)).Do(t, apitest.Request{Method: "GET", Path: "/lists"})
	r.JSON(t, &lists)
	if len(lists.Entries) != 1 || lists.Entries[0].Address != board {
		t.Errorf("board-only lists: %s", r.Body)
	}
	// The secrets are in no log line; the key's name is in the issue's.
	log := e.log.String()
	if strings.Contains(log, tok.Token) || strings.Contains(log, key) {
		t.Errorf("a secret is in the log")
	}
	if !strings.Contains(log, `msg="API: token issued"`) || !strings.Contains(log, "api_key=portal") || !strings.Contains(log, "token_id="+tok.ID) {
		t.Errorf("the issue is not logged with the key's name:\n%s", log)
	}
}

// TestIdempotentRetry: a retry with the same Idempotency-Key returns the
// same token record without its secret and issues nothing; the same key
// with another request is refused; another API key's same key is its own.
func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	req := apitest.Request{Method: "POST", Path: "/lists/" + board + "/tokens", Body: map[string]any{"sender": alice, "owner": "u1"},
		Header: map[string]string{"Idempotency-Key": "order-4711"}}
	first := c.Do(t, req)
	if first.Status != 201 {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	var a issued
	first.JSON(t, &a)
	retry := c.Do(t, req)
	var b issued
	retry.JSON(t, &b)
	if retry.Status != 200 || b.ID != a.ID || retry.Header.Get("Idempotency-Replayed") != "true" || retry.Header.Get("Location") != "/api/v1/tokens/"+a.ID {
		t.Errorf("retry: %d %s", retry.Status, retry.Body)
	}
	if b.Token != "" || strings.Contains(string(retry.Body), a.Token) {
		t.Errorf("the retry shows the secret again: %s", retry.Body)
	}
	other := req
	other.Body = map[string]any{"sender": "mallory@example.net"}
	wantProblem(t, "same key, other request", c.Do(t, other), 422, "idempotency_key_reused")
	// Another API key has its own idempotency keys.
	c2 := e.client(e.key("other-portal", []string{"*"}, apikey.AllScopes, nil))
	r := c2.Do(t, req)
	if r.Status != 201 {
		t.Errorf("another key's first use: %d", r.Status)
	}
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + board + "/tokens"})
	var page struct{ Total int }
	r.JSON(t, &page)
	if page.Total != 2 {
		t.Errorf("%d tokens issued, want 2 (one per API key)", page.Total)
	}
	// The token issued first still works: the retry did not re-key it.
	if v := e.milter(board, message("RMTOKEN", a.Token, "idempotent")); !v.Accepted {
		t.Errorf("the first token is refused after the retry: %v", v)
	}
	wantProblem(t, "bad Idempotency-Key", c.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + board + "/tokens", Body: map[string]any{},
		Header: map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, Invalid: true}), 422, "invalid_request")
}

// TestErrorClasses: every error class, each a problem document with its
// reason: 401, 403, 404, 405, 409, 413, 415, 422.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	full := e.client(e.fullKey())
	readOnly := e.client(e.key("reader", []string{board}, []string{apikey.ScopeRead}, nil))
	boardOnly := e.client(e.key("board-portal", []string{board}, apikey.AllScopes, nil))
	revokedKey := e.key("old", []string{"*"}, apikey.AllScopes, func(k *store.APIKey) { k.Revoked = true })
	expiredKey := e.key("expired", []string{"*"}, apikey.AllScopes, func(k *store.APIKey) { k.Expires = time.Now().Add(-time.Hour) })
	tok := issue(t, full, board, nil)
	ev := issue(t, full, events, map[string]any{"recipients": []string{"guest@example.net"}})
	get := apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID}

	// 401
	r := full.WithKey("").Do(t, get)
	wantProblem(t, "no key", r, 401, "unauthorized")
	if h := r.Header.Get("WWW-Authenticate"); h != `Bearer realm="restrictedmail"` {
		t.Errorf("WWW-Authenticate %q", h)
	}
	bogus, _ := apikey.Generate()
	for name, k := range map[string]string{"unknown key": bogus, "revoked key": revokedKey, "expired key": expiredKey,
		"malformed key": "rmk_nope", "a token as a key": tok.Token} {
		r := full.WithKey(k).Do(t, get)
		wantProblem(t, name, r, 401, "unauthorized")
		if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", name, h)
		}
	}
	r = full.Do(t, apitest.Request{Method: "GET", Path: "/lists", Header: map[string]string{"Authorization": "Basic " + tok.Token}, Invalid: true})
	wantProblem(t, "basic auth", r, 401, "unauthorized")

	// 403
	r = readOnly.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + board + "/tokens", Body: map[string]any{}})
	wantProblem(t, "read-only key issues", r, 403, "insufficient_scope")
	if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `scope="issue"`) {
		t.Errorf("insufficient_scope WWW-Authenticate %q", h)
	}
	wantProblem(t, "read-only key revokes", readOnly.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + tok.ID + "/revoke"}), 403, "insufficient_scope")
	wantProblem(t, "board key issues for events", boardOnly.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + events + "/tokens",
		Body: map[string]any{"recipients": []string{"a@example.net"}}}), 403, "wrong_list")
	wantProblem(t, "board key lists events", boardOnly.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + events + "/tokens"}), 403, "wrong_list")

	// 404
	wantProblem(t, "unknown list", full.Do(t, apitest.Request{Method: "POST", Path: "/lists/nobody@example.org/tokens", Body: map[string]any{}}), 404, "unknown_list")
	wantProblem(t, "not an address", full.Do(t, apitest.Request{Method: "GET", Path: "/lists/not-an-address/tokens"}), 404, "unknown_list")
	wantProblem(t, "unknown token", full.Do(t, apitest.Request{Method: "GET", Path: "/tokens/aaaaaaaaaa"}), 404, "unknown_token")
	wantProblem(t, "another list's token", boardOnly.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + ev.ID}), 404, "unknown_token")
	wantProblem(t, "another list's token, revoke", boardOnly.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + ev.ID + "/revoke"}), 404, "unknown_token")
	wantProblem(t, "unknown path", full.Do(t, apitest.Request{Method: "GET", Path: "/nothing/here"}), 404, "not_found")

	// 405
	r = full.Do(t, apitest.Request{Method: "DELETE", Path: "/tokens/" + tok.ID})
	wantProblem(t, "DELETE", r, 405, "method_not_allowed")
	if r.Header.Get("Allow") != "GET" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}

	// 409: a revoked token can be neither re-keyed nor given recipients;
	// revoking again is fine.
	for range 2 {
		if r := full.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + tok.ID + "/revoke"}); r.Status != 204 || len(r.Body) != 0 {
			t.Errorf("revoke: %d %s", r.Status, r.Body)
		}
	}
	wantProblem(t, "rekey revoked", full.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + tok.ID + "/rekey"}), 409, "revoked")
	wantProblem(t, "recipients of revoked", full.Do(t, apitest.Request{Method: "PUT", Path: "/tokens/" + tok.ID + "/recipients",
		Body: map[string]any{"recipients": []string{"a@example.net"}}}), 409, "revoked")
	used := issue(t, full, board, map[string]any{"sender": alice})
	if err := e.lmtp(board, message("RMTOKEN", used.Token, "use it up")); err != nil {
		t.Fatalf("delivery: %v", err)
	}
	wantProblem(t, "rekey used", full.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + used.ID + "/rekey"}), 409, "used_up")
	expired := issue(t, full, board, map[string]any{"ttl": "1s"})
	until(t, 10*time.Second, "the 1s token expires", func() bool {
		r := full.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + expired.ID})
		var s issued
		r.JSON(t, &s)
		return s.State == "expired"
	})
	wantProblem(t, "rekey expired", full.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + expired.ID + "/rekey"}), 409, "expired")

	// 422, with the field named.
	for _, tt := range []struct {
		name  string
		list  string
		body  any
		field string
	}{
		{"bad sender", board, map[string]any{"sender": "bad@"}, "sender"},
		{"bad ttl", board, map[string]any{"ttl": "soon"}, "ttl"},
		{"negative ttl", board, map[string]any{"ttl": "-5h"}, "ttl"},
		{"zero uses", board, map[string]any{"uses": 0}, "uses"},
		{"bad recipient", board, map[string]any{"recipients": []string{"ok@example.net", "x@"}}, "recipients"},
		{"the list itself", board, map[string]any{"recipients": []string{"BOARD@example.org"}}, "recipients"},
		{"no recipients for events", events, map[string]any{}, "recipients"},
		{"owner too long", board, map[string]any{"owner": strings.Repeat("o", 300)}, "owner"},
		{"control characters", board, map[string]any{"external_ref": "a\x00b"}, "external_ref"},
		{"wrong type", board, `{"uses": "three"}`, "uses"},
		{"unknown field", board, `{"sender": "a@example.net", "admin": true}`, "admin"},
	} {
		r := full.Do(t, apitest.Request{Method: "POST", Path: "/lists/" + tt.list + "/tokens", Body: tt.body, Invalid: true})
		p := wantProblem(t, tt.name, r, 422, "invalid_request")
		if len(p.Errors) != 1 || p.Errors[0].Field != tt.field {
			t.Errorf("%s: errors %+v, want field %q", tt.name, p.Errors, tt.field)
		}
	}
	wantProblem(t, "recipients missing", full.Do(t, apitest.Request{Method: "PUT", Path: "/tokens/" + ev.ID + "/recipients", Body: map[string]any{}, Invalid: true}), 422, "invalid_request")
	wantProblem(t, "recipients emptied for events", full.Do(t, apitest.Request{Method: "PUT", Path: "/tokens/" + ev.ID + "/recipients",
		Body: map[string]any{"recipients": []string{}}}), 422, "invalid_request")
	wantProblem(t, "bad limit", full.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + board + "/tokens?limit=1000", Invalid: true}), 422, "invalid_request")
	wantProblem(t, "bad cursor", full.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + board + "/tokens?cursor=xyz"}), 422, "invalid_request")
	wantProblem(t, "bad state", full.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + board + "/tokens?state=gone", Invalid: true}), 422, "invalid_request")
	// Nothing internal in any problem.
	if strings.Contains(e.log.String(), "panic") {
		t.Error("a panic in the log")
	}
}

// TestThrottled: a client that fails to authenticate auth_failure_limit
// times gets 429 with Retry-After — also with a valid key — before any
// lookup; each failure waits auth_failure_delay.
func TestThrottled(t *testing.T) {
	t.Parallel()
	e := start(t, "auth_failure_limit = 3\nauth_failure_delay = \"100ms\"\n")
	good := e.client(e.fullKey())
	if r := good.Do(t, apitest.Request{Method: "GET", Path: "/lists"}); r.Status != 200 {
		t.Fatalf("a valid key: %d", r.Status)
	}
	bad, _ := apikey.Generate()
	for i := range 3 {
		begin := time.Now()
		wantProblem(t, fmt.Sprintf("failure %d", i+1), good.WithKey(bad).Do(t, apitest.Request{Method: "GET", Path: "/lists"}), 401, "unauthorized")
		if d := time.Since(begin); d < 100*time.Millisecond {
			t.Errorf("a failed authentication answered after %v, before the delay", d)
		}
	}
	r := good.WithKey(bad).Do(t, apitest.Request{Method: "GET", Path: "/lists"})
	wantProblem(t, "after the limit", r, 429, "throttled")
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	wantProblem(t, "a valid key from the blocked address", good.Do(t, apitest.Request{Method: "GET", Path: "/lists"}), 429, "throttled")
	if !strings.Contains(e.log.String(), "too many failed API authentications") {
		t.Error("the block is not logged")
	}
}

// TestPagination: 250 tokens, paged by a cursor, newest first, each once;
// totals and counts for badges; filters by owner and state.
func TestPagination(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	want := map[string]bool{}
	for i := range 250 {
		owner := "even"
		if i%2 == 1 {
			owner = "odd"
		}
		want[issue(t, c, board, map[string]any{"owner": owner}).ID] = true
	}
	revoked := issue(t, c, board, map[string]any{"owner": "even"})
	c.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + revoked.ID + "/revoke"})

	type page struct {
		Entries []struct {
			ID        string    `json:"id"`
			CreatedAt time.Time `json:"created_at"`
			Owner     string    `json:"owner"`
		} `json:"entries"`
		Total  int `json:"total"`
		Counts struct {
			Active, Revoked, Total int
		} `json:"counts"`
		NextCursor *string `json:"next_cursor"`
		Links      struct {
			Next string `json:"next"`
		} `json:"links"`
	}
	walk := func(query string) (ids []string, pages int, first page) {
		path := "/lists/" + board + "/tokens?" + query
		var last time.Time
		for {
			r := c.Do(t, apitest.Request{Method: "GET", Path: path})
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", path, r.Status, r.Body)
			}
			var p page
			r.JSON(t, &p)
			if pages == 0 {
				first = p
			}
			pages++
			for _, en := range p.Entries {
				if !last.IsZero() && en.CreatedAt.After(last) {
					t.Errorf("not newest first: %v after %v", en.CreatedAt, last)
				}
				last = en.CreatedAt
				ids = append(ids, en.ID)
			}
			if p.NextCursor == nil {
				return ids, pages, first
			}
			path = strings.TrimPrefix(p.Links.Next, "/api/v1")
			if pages > 100 {
				t.Fatal("the cursor does not end")
			}
		}
	}
	ids, pages, first := walk("limit=100&state=active")
	if pages != 3 || len(ids) != 250 || first.Total != 250 || first.Counts.Active != 250 || first.Counts.Revoked != 1 || first.Counts.Total != 251 {
		t.Errorf("%d pages, %d ids, total %d, counts %+v", pages, len(ids), first.Total, first.Counts)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] || !want[id] {
			t.Errorf("token %s twice or not issued", id)
		}
		seen[id] = true
	}
	ids, _, first = walk("owner=odd&limit=40")
	if len(ids) != 125 || first.Total != 125 {
		t.Errorf("owner=odd: %d ids, total %d", len(ids), first.Total)
	}
	ids, _, _ = walk("owner=even")
	if len(ids) != 126 {
		t.Errorf("owner=even: %d ids (125 active and the revoked one)", len(ids))
	}
	ids, _, first = walk("state=revoked")
	if len(ids) != 1 || ids[0] != revoked.ID || first.Total != 1 {
		t.Errorf("state=revoked: %v", ids)
	}
}

// TestRekey: the old secret is refused by the milter and by the LMTP
// endpoint from the moment of the re-key, and the new one is accepted by
// both and delivers.
func TestRekey(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	old := issue(t, c, board, map[string]any{"sender": alice})
	r := c.Do(t, apitest.Request{Method: "POST", Path: "/tokens/" + old.ID + "/rekey"})
	var fresh issued
	r.JSON(t, &fresh)
	if r.Status != 200 || fresh.ID != old.ID || fresh.Token == "" || fresh.Token == old.Token || fresh.TokenFile != "RMTOKEN"+fresh.Token+"\n" {
		t.Fatalf("rekey: %d %s", r.Status, r.Body)
	}
	if v := e.milter(board, message("RMTOKEN", old.Token, "old")); v.Accepted || !strings.Contains(v.Reply, "550 5.7.1") {
		t.Errorf("milter with the old token: %v", v)
	}
	err := e.lmtp(board, message("RMTOKEN", old.Token, "old"))
	var se *smtp.SMTPError
	if !asSMTP(err, &se) || se.Code != 550 {
		t.Errorf("LMTP with the old token: %v, want 550", err)
	}
	if v := e.milter(board, message("RMTOKEN", fresh.Token, "new")); !v.Accepted {
		t.Errorf("milter with the new token: %v", v)
	}
	if err := e.lmtp(board, message("RMTOKEN", fresh.Token, "new")); err != nil {
		t.Errorf("LMTP with the new token: %v", err)
	}
	e.relay.WaitRecipients(t, len(members), 30*time.Second)
	if got := e.relay.Recipients(); !sameSet(got, members) {
		t.Errorf("copies to %v, want %v", got, members)
	}
}

// TestRecipientsReplacedBeforeUse: the recipients a token is given by PUT
// before it is used are exactly the ones its mail reaches; the delivery is
// then read back recipient by recipient, a refused one with the relay's
// reply.
func TestRecipientsReplacedBeforeUse(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	e.relay.SetRcptHook(func(rcpt string) *smtp.SMTPError {
		if rcpt == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	tok := issue(t, c, events, map[string]any{"recipients": []string{"first@example.net"}})
	want := []string{"b@example.net", "c@example.com", "gone@example.com"}
	r := c.Do(t, apitest.Request{Method: "PUT", Path: "/tokens/" + tok.ID + "/recipients", Body: map[string]any{"recipients": want}})
	var got issued
	r.JSON(t, &got)
	if r.Status != 200 || !slices.Equal(got.Recipients, want) {
		t.Fatalf("PUT recipients: %d %s", r.Status, r.Body)
	}
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID + "/deliveries"})
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"entries":[]}` {
		t.Errorf("deliveries before use: %s", r.Body)
	}
	msg := []byte(strings.ReplaceAll(string(message("RMTOKEN", tok.Token, "replaced")), board, events))
	if err := e.lmtp(events, msg); err != nil {
		t.Fatalf("delivery: %v", err)
	}
	e.relay.WaitRecipients(t, 2, 30*time.Second)
	if rs := e.relay.Recipients(); !sameSet(rs, want[:2]) {
		t.Errorf("copies to %v, want %v", rs, want[:2])
	}
	r = c.Do(t, apitest.Request{Method: "GET", Path: "/tokens/" + tok.ID + "/deliveries"})
	var ds struct {
		Entries []struct {
			State  string `json:"state"`
			Counts struct {
				Delivered, Failed, Pending int
			} `json:"counts"`
			Recipients []struct {
				Address string `json:"address"`
				State   string `json:"state"`
				Reply   string `json:"reply"`
			} `json:"recipients"`
		} `json:"entries"`
	}
	r.JSON(t, &ds)
	if len(ds.Entries) != 1 {
		t.Fatalf("deliveries: %s", r.Body)
	}
	d := ds.Entries[0]
	if d.State != "completed" || d.Counts.Delivered != 2 || d.Counts.Failed != 1 || d.Counts.Pending != 0 || len(d.Recipients) != 3 {
		t.Errorf("delivery: %s", r.Body)
	}
	if f := d.Recipients[0]; f.Address != "gone@example.com" || f.State != "failed" || !strings.Contains(f.Reply, "550") {
		t.Errorf("the failed recipient first, with the relay's reply: %+v", f)
	}
	wantProblem(t, "recipients after use", c.Do(t, apitest.Request{Method: "PUT", Path: "/tokens/" + tok.ID + "/recipients",
		Body: map[string]any{"recipients": []string{"late@example.net"}}}), 409, "used_up")
}

// TestHostileInput: huge bodies, deep JSON, bad UTF-8, 10,000 recipients,
// unknown fields, wrong media types, trailing data: each gets a problem
// document, the daemon keeps serving, and nothing is issued.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	c := e.client(e.fullKey())
	many := make([]string, 10_000)
	for i := range many {
		many[i] = fmt.Sprintf("r%05d@example.net", i)
	}
	post := "/lists/" + board + "/tokens"
	for _, tt := range []struct {
		name   string
		body   any
		ctype  string
		status int
		reason string
	}{
		{"2 MiB body", `{"owner": "` + strings.Repeat("x", 2<<20) + `"}`, "", 413, "too_large"},
		{"deep JSON", strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), "", 400, "malformed"},
		{"deep JSON in a field", `{"recipients": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "", 422, "invalid_request"},
		{"bad UTF-8", []byte("{\"owner\": \"\xff\xfe\"}"), "", 400, "malformed"},
		{"10,000 recipients", map[string]any{"recipients": many}, "", 422, "invalid_request"},
		{"unknown fields", `{"tokens": 5, "uses": 1}`, "", 422, "invalid_request"},
		{"not JSON", "sender=alice", "", 400, "malformed"},
		{"empty", "", "", 400, "malformed"},
		{"an array", `[]`, "", 400, "malformed"},
		{"trailing data", `{} {}`, "", 400, "malformed"},
		{"truncated", `{"sender": "a@exa`, "", 400, "malformed"},
		{"form", `{}`, "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		{"latin-1", `{}`, "application/json; charset=iso-8859-1", 415, "unsupported_media_type"},
		{"null", `null`, "", 200, ""},
	} {
		h := map[string]string{}
		if tt.ctype != "" {
			h["Content-Type"] = tt.ctype
		}
		r := c.Do(t, apitest.Request{Method: "POST", Path: post, Body: tt.body, Header: h, Invalid: true})
		if tt.status == 200 {
			// JSON null is an empty request: a token with the defaults.
			if r.Status != 201 {
				t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
			}
			continue
		}
		p := wantProblem(t, tt.name, r, tt.status, tt.reason)
		if strings.Contains(p.Detail, "json:") || strings.Contains(p.Detail, "sql") {
			t.Errorf("%s: internal text in the detail %q", tt.name, p.Detail)
		}
	}
	r := c.Do(t, apitest.Request{Method: "GET", Path: "/lists/" + board + "/tokens"})
	var page struct{ Total int }
	r.JSON(t, &page)
	if page.Total != 1 {
		t.Errorf("%d tokens issued by the hostile requests, want 1 (the null body)", page.Total)
	}
	if strings.Contains(e.log.String(), "panic") {
		t.Error("a panic in the log")
	}
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	for i := range x {
		x[i] = strings.ToLower(x[i])
	}
	for i := range y {
		y[i] = strings.ToLower(y[i])
	}
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func asSMTP(err error, se **smtp.SMTPError) bool {
	if e, ok := err.(*smtp.SMTPError); ok {
		*se = e
		return true
	}
	return false
}
