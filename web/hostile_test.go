package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

func TestIssueFormHostileInput(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(alice)
	csrf := b.csrf()
	post := func(form url.Values) resp {
		t.Helper()
		form.Set("csrf", csrf)
		return b.post("/lists/"+board+"/issue", form)
	}
	bad := pasted("ok@example.net", "not an address", "", "also@bad@x", "fine@example.com")
	r := post(bad)
	if r.Status != http.StatusUnprocessableEntity || !strings.Contains(r.Body, "Line 2:") || !strings.Contains(r.Body, "Line 4:") || strings.Contains(r.Body, "Line 5:") {
		t.Fatalf("bad lines: %d\n%s", r.Status, r.Body)
	}
	if !strings.Contains(r.Body, "fine@example.com") {
		t.Error("the pasted addresses are not kept in the form")
	}
	for name, form := range map[string]url.Values{
		"uses -1":        {"uses": {"-1"}},
		"uses text":      {"uses": {"many"}},
		"uses huge":      {"uses": {"99999999999999999999"}},
		"ttl text":       {"ttl": {"forever"}},
		"ttl negative":   {"ttl": {"-5h"}},
		"ttl ten years":  {"ttl": {"3650d"}},
		"sender":         {"sender": {"<script>@x"}},
		"mode":           {"recipients_mode": {"all of them"}},
		"both":           {"recipients_mode": {"list"}, "recipients": {"a@example.net"}},
		"none":           {"recipients_mode": {"pasted"}, "recipients": {" \n\n "}},
		"nul":            {"recipients": {"a\x00b@example.net"}},
		"huge line":      {"recipients": {strings.Repeat("a", 5000) + "@example.net"}},
		"many addresses": {"recipients": {strings.Repeat("x@example.net,", 10) + strings.Repeat("y", 70) + "@" + strings.Repeat("z", 300) + ".net"}},
	} {
		f := pasted("a@example.net")
		for k, v := range form {
			f[k] = v
		}
		r := post(f)
		if r.Status != http.StatusUnprocessableEntity || strings.Contains(r.Body, "<script>@") {
			t.Errorf("%s: %d", name, r.Status)
		}
	}
	// A body over the limit is refused before it is read whole.
	huge := pasted(strings.Repeat("x", 2<<20))
	if r := post(huge); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB form: %d", r.Status)
	}
	// More addresses than a token may name.
	h.set.Tokens.MaxRecipients = 3
	if r := post(pasted("a@x.net", "b@x.net", "c@x.net", "d@x.net")); r.Status != http.StatusUnprocessableEntity || !strings.Contains(r.Body, "Too many") {
		t.Errorf("too many recipients: %d", r.Status)
	}
	page, _ := h.db.ListTokens(context.Background(), store.TokenQuery{List: board, Limit: 10, Now: time.Now()})
	if len(page.Tokens) != 0 {
		t.Fatalf("hostile forms issued %d tokens", len(page.Tokens))
	}
}

// FuzzIssueForm: whatever the form holds, the page answers with a page
// (never a 500, never a panic), and a token is issued only with a 200.
func FuzzIssueForm(f *testing.F) {
	f.Add("a@example.net\nb@example.net", "7d", "1", "", "pasted", "")
	f.Add("", "0", "1000", "x@example.org", "list", "1")
	f.Add("\x00\xff", "1e9h", "-0", "@", "", "yes")
	f.Add(strings.Repeat("a@b.c,", 100), "99999d", "1.5", "ä@ü.example", "pasted", "1")
	h := newFuzzHarness(f)
	f.Fuzz(func(t *testing.T, rcpts, ttl, uses, sender, mode, hide string) {
		form := url.Values{"csrf": {h.csrf}, "recipients": {rcpts}, "ttl": {ttl}, "uses": {uses}, "sender": {sender}, "recipients_mode": {mode}, "hide_sender": {hide}}
		req := httptest.NewRequest(http.MethodPost, "/lists/"+board+"/issue", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.AddCookie(h.cookie)
		w := httptest.NewRecorder()
		h.web.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d\n%s", w.Code, w.Body.String())
		}
		ours := bytes.Count(w.Body.Bytes(), []byte(`<script src="/static/copy.js" defer></script>`)) +
			bytes.Count(w.Body.Bytes(), []byte(`<script src="/static/fields.js" defer></script>`))
		if bytes.Count(w.Body.Bytes(), []byte("<script")) != ours {
			t.Fatal("a script element of the input's on the page")
		}
	})
}

type fuzzHarness struct {
	*harness
	cookie *http.Cookie
	csrf   string
}

func newFuzzHarness(t testing.TB) *fuzzHarness {
	h := newHarness(t, nil)
	secret, hash := newSecret()
	now := time.Unix(h.now.Load(), 0)
	if err := h.db.AddWebSession(context.Background(), hash, alice, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return &fuzzHarness{harness: h, cookie: &http.Cookie{Name: sessionCookie, Value: secret}, csrf: csrfOf(hash)}
}
