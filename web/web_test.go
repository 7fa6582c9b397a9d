package web

import (
	"context"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
)

func TestHeadersOnEveryPage(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	for _, path := range []string{"/signin", "/nope", "/signin/link?t=x"} {
		r := b.get(path)
		for k, want := range map[string]string{
			"Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		if strings.Contains(r.Body, "<script>") || strings.Contains(r.Body, "style=") || strings.Contains(r.Body, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(r.Body) {
			t.Errorf("%s has inline script or style", path)
		}
	}
	if r := b.get("/"); r.Status != http.StatusOK || !strings.Contains(r.Body, `action="/signin"`) {
		t.Errorf("signed out, / does not lead to the sign-in form: %d", r.Status)
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(alice)
	form := pasted("x@example.net")
	form.Set("csrf", b.csrf())
	for name, hdr := range map[string]http.Header{
		"Sec-Fetch-Site": {"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}},
		"Origin":         {"Sec-Fetch-Site": nil, "Origin": {"https://evil.example"}},
	} {
		r := b.do(http.MethodPost, "/lists/"+board+"/issue", form, hdr)
		if r.Status != http.StatusForbidden || !strings.Contains(r.Body, "another site") {
			t.Errorf("%s: cross-site POST answered %d", name, r.Status)
		}
	}
	// The same-origin form without the session's CSRF token is refused too.
	form.Set("csrf", "forged")
	if r := b.post("/lists/"+board+"/issue", form); r.Status != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d", r.Status)
	}
	form.Del("csrf")
	if r := b.post("/lists/"+board+"/issue", form); r.Status != http.StatusForbidden {
		t.Errorf("POST without CSRF token: %d", r.Status)
	}
	page, err := h.db.ListTokens(context.Background(), store.TokenQuery{List: board, Limit: 10, Now: time.Now()})
	if err != nil || len(page.Tokens) != 0 {
		t.Fatalf("refused POSTs issued %d tokens (%v)", len(page.Tokens), err)
	}
}

func TestSignInLinkWorksOnce(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	link := b.linkFor(alice)
	if r := b.useLink(link); r.Status != http.StatusOK || !strings.Contains(r.Body, "Example Board") {
		t.Fatalf("first use: %d\n%s", r.Status, r.Body)
	}
	other := h.browser()
	if r := other.useLink(link); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "does not work") {
		t.Fatalf("second use: %d\n%s", r.Status, r.Body)
	}
	if r := other.get("/"); strings.Contains(r.Body, "Example Board") {
		t.Fatal("a used link signed a second browser in")
	}
	// A link older than 15 minutes does not work either.
	late := h.browser()
	link = late.linkFor(alice)
	h.now.Add(int64(LinkLifetime/time.Second) + 1)
	if r := late.useLink(link); r.Status != http.StatusBadRequest {
		t.Fatalf("expired link: %d", r.Status)
	}
}

func TestUnknownAddressSamePage(t *testing.T) {
	h := newHarness(t, nil)
	h.mail.hold = make(chan struct{})
	b := h.browser()
	// The known address's answer comes while its mail is still held: the
	// page never waits for the mail, so both answers take the same path.
	known := b.post("/signin", url.Values{"email": {alice}})
	unknown := b.post("/signin", url.Values{"email": {"mallory@example.org"}})
	close(h.mail.hold)
	h.web.Wait()
	if known.Status != http.StatusOK || unknown.Status != http.StatusOK {
		t.Fatalf("statuses %d, %d", known.Status, unknown.Status)
	}
	if k, u := strings.ReplaceAll(known.Body, alice, "X"), strings.ReplaceAll(unknown.Body, "mallory@example.org", "X"); k != u {
		t.Fatalf("the pages differ:\n%s\n---\n%s", k, u)
	}
	if len(h.mail.to(alice)) != 1 || len(h.mail.to("mallory@example.org")) != 0 {
		t.Fatalf("mails: %+v", h.mail.mails)
	}
}

func TestSignInRateLimited(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	for i := range DefaultSignInLimits.Limit {
		if r := b.post("/signin", url.Values{"email": {"nobody@example.org"}}); r.Status != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, r.Status)
		}
	}
	if r := b.post("/signin", url.Values{"email": {"nobody@example.org"}}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("request over the limit: %d", r.Status)
	}
	// Another address from the same client is not blocked yet.
	if r := b.post("/signin", url.Values{"email": {alice}}); r.Status != http.StatusOK {
		t.Fatalf("other address: %d", r.Status)
	}
}

func TestOwnerSeesOnlyOwnLists(t *testing.T) {
	h := newHarness(t, nil)
	a := h.browser()
	a.signIn(alice)
	id, _, _ := a.issue(board, pasted("x@example.net"))
	bb := h.browser()
	bb.signIn(bob)
	over := bb.get("/")
	if strings.Contains(over.Body, board) || !strings.Contains(over.Body, events) {
		t.Fatalf("bob's overview:\n%s", over.Body)
	}
	for _, path := range []string{"/lists/" + board + "/", "/lists/" + board + "/issue", "/tokens/" + id, "/tokens/" + id + "/revoke", "/tokens/" + id + "/rekey"} {
		if r := bb.get(path); r.Status != http.StatusNotFound || strings.Contains(r.Body, id+"<") {
			t.Errorf("bob GET %s: %d", path, r.Status)
		}
	}
	csrf := bb.csrf()
	for _, path := range []string{"/tokens/" + id + "/revoke", "/tokens/" + id + "/rekey", "/tokens/" + id + "/file", "/lists/" + board + "/issue"} {
		form := pasted("y@example.net")
		form.Set("csrf", csrf)
		if r := bb.post(path, form); r.Status != http.StatusNotFound {
			t.Errorf("bob POST %s: %d", path, r.Status)
		}
	}
	if rec := h.token(id); rec.Revoked {
		t.Fatal("bob revoked alice's token")
	}
	// An unknown token id looks the same as another list's.
	if r := bb.get("/tokens/nosuchtoken"); r.Status != http.StatusNotFound {
		t.Errorf("unknown token: %d", r.Status)
	}
	// The admin sees both lists and the token.
	ad := h.browser()
	ad.signIn(root)
	if r := ad.get("/"); !strings.Contains(r.Body, board) || !strings.Contains(r.Body, events) {
		t.Fatal("the admin does not see every list")
	}
	if r := ad.get("/tokens/" + id); r.Status != http.StatusOK {
		t.Fatalf("admin GET token: %d", r.Status)
	}
}

func TestSecretOnlyAfterIssuing(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(alice)
	id, secret, page := b.issue(board, pasted("a@example.net", "b@example.net", "c@example.net"))
	if body := html.UnescapeString(page.Body); !strings.Contains(body, "board+"+secret+"@example.org") || !strings.Contains(body, "X-Restricted-Token: "+secret) {
		t.Errorf("the page after issuing does not explain the three ways:\n%s", page.Body)
	}
	rec := h.token(id)
	if rec.Owner != alice || len(rec.Recipients) != 3 || rec.UsesAllowed != 1 {
		t.Errorf("token %+v", rec)
	}
	csrf := b.csrf()
	file := b.post("/tokens/"+id+"/file", url.Values{"csrf": {csrf}, "token": {secret}})
	if file.Status != http.StatusOK || file.Body != "RMTOKEN"+secret+"\n" || !strings.Contains(file.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("token file: %d %q %v", file.Status, file.Body, file.Header)
	}
	if r := b.post("/tokens/"+id+"/file", url.Values{"csrf": {csrf}, "token": {"guess"}}); r.Status != http.StatusBadRequest {
		t.Errorf("token file for a wrong secret: %d", r.Status)
	}
	for _, path := range []string{"/", "/lists/" + board + "/", "/lists/" + board + "/?state=active", "/tokens/" + id, "/tokens/" + id + "/revoke", "/tokens/" + id + "/rekey", "/lists/" + board + "/issue"} {
		if r := b.get(path); r.Status != http.StatusOK || strings.Contains(r.Body, secret) {
			t.Errorf("GET %s: %d, secret shown: %v", path, r.Status, strings.Contains(r.Body, secret))
		}
	}
	// Re-keying shows a new secret (once) and voids the old one.
	rk := b.post("/tokens/"+id+"/rekey", url.Values{"csrf": {csrf}})
	m := tokenRe.FindStringSubmatch(rk.Body)
	if rk.Status != http.StatusOK || m == nil || m[1] == secret {
		t.Fatalf("rekey: %d", rk.Status)
	}
	if r := b.post("/tokens/"+id+"/file", url.Values{"csrf": {csrf}, "token": {secret}}); r.Status != http.StatusBadRequest {
		t.Errorf("the old secret still downloads: %d", r.Status)
	}
}

func TestRevokeAndSignOut(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	b.signIn(alice)
	id, _, _ := b.issue(board, url.Values{"recipients_mode": {"list"}})
	if c := b.get("/tokens/" + id + "/revoke"); !strings.Contains(c.Body, "Revoke the token") || h.token(id).Revoked {
		t.Fatal("the confirmation page revoked or did not ask")
	}
	r := b.post("/tokens/"+id+"/revoke", url.Values{"csrf": {b.csrf()}})
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "is revoked") || !h.token(id).Revoked {
		t.Fatalf("revoke: %d\n%s", r.Status, r.Body)
	}
	csrf := b.csrf()
	if r := b.post("/signout", url.Values{"csrf": {csrf}}); r.Status != http.StatusOK || !strings.Contains(r.Body, "signed out") {
		t.Fatalf("sign out: %d", r.Status)
	}
	if r := b.get("/"); strings.Contains(r.Body, "Example Board") {
		t.Fatal("still signed in after signing out")
	}
}

func TestSessionExpires(t *testing.T) {
	h := newHarness(t, func(s *Settings) { s.SessionLifetime = time.Hour })
	b := h.browser()
	b.signIn(alice)
	h.now.Add(3600)
	if r := b.get("/"); strings.Contains(r.Body, "Example Board") {
		t.Fatal("signed in after the session's lifetime")
	}
}

func TestTrustedProxyHeader(t *testing.T) {
	h := newHarness(t, func(s *Settings) {
		s.TrustedUserHeader = "X-Forwarded-User"
		s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	b := h.browser()
	r := b.do(http.MethodGet, "/", nil, http.Header{"X-Forwarded-User": {alice}})
	if !strings.Contains(r.Body, "Example Board") {
		t.Fatalf("the proxy's user is not signed in:\n%s", r.Body)
	}
	// The header of somebody who owns nothing signs nobody in.
	if r := h.browser().do(http.MethodGet, "/", nil, http.Header{"X-Forwarded-User": {"mallory@example.org"}}); strings.Contains(r.Body, "Your lists") {
		t.Fatal("a stranger was signed in by the header")
	}
	h2 := newHarness(t, func(s *Settings) {
		s.TrustedUserHeader = "X-Forwarded-User"
		s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	if r := h2.browser().do(http.MethodGet, "/", nil, http.Header{"X-Forwarded-User": {alice}}); strings.Contains(r.Body, "Example Board") {
		t.Fatal("the header was believed from a client that is no trusted proxy")
	}
}

func TestLanguage(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	if r := b.do(http.MethodGet, "/signin", nil, http.Header{"Accept-Language": {"nb-NO,nb;q=0.9,en;q=0.5"}}); !strings.Contains(r.Body, "Logg inn") || !strings.Contains(r.Body, `lang="nb"`) {
		t.Fatalf("Accept-Language nb:\n%s", r.Body)
	}
	if r := b.do(http.MethodGet, "/signin", nil, http.Header{"Accept-Language": {"no"}}); !strings.Contains(r.Body, "Logg inn") {
		t.Fatal("Accept-Language no is not Bokmål")
	}
	if r := b.get("/signin?lang=nb"); !strings.Contains(r.Body, "Logg inn") {
		t.Fatal("?lang=nb")
	}
	// The choice is remembered, and beats Accept-Language.
	if r := b.do(http.MethodGet, "/signin", nil, http.Header{"Accept-Language": {"en"}}); !strings.Contains(r.Body, "Logg inn") {
		t.Fatal("the lang cookie is not remembered")
	}
	if r := h.browser().do(http.MethodGet, "/signin", nil, http.Header{"Accept-Language": {"de, fr"}}); !strings.Contains(r.Body, "Sign in") {
		t.Fatal("no match is not English")
	}
	// The sign-in mail is in the language of the request.
	b.post("/signin", url.Values{"email": {alice}})
	h.web.Wait()
	if m := h.mail.to(alice); len(m) != 1 || !strings.Contains(m[0].Subject, "Logg inn") {
		t.Fatalf("mail %+v", m)
	}
}

func TestCookieSecureOverHTTPS(t *testing.T) {
	for _, tt := range []struct {
		base   string
		secure bool
	}{{"https://lists.example.org/", true}, {"http://127.0.0.1:8027/", false}} {
		h := newHarness(t, func(s *Settings) {
			s.BaseURL, _ = url.Parse(tt.base)
			s.TrustedUserHeader = "X-Forwarded-User"
			s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		r := h.browser().do(http.MethodGet, "/", nil, http.Header{"X-Forwarded-User": {alice}})
		c := r.Header.Get("Set-Cookie")
		if !strings.Contains(c, sessionCookie+"=") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") ||
			strings.Contains(c, "Secure") != tt.secure {
			t.Errorf("%s: Set-Cookie %q", tt.base, c)
		}
	}
}

func TestLanguageSwitchKeepsTheLink(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	link := b.linkFor(alice)
	u, _ := url.Parse(link)
	page := b.get(u.RequestURI())
	if !strings.Contains(html.UnescapeString(page.Body), "/signin/link?lang=nb&t="+u.Query().Get("t")) {
		t.Fatalf("the language switch drops the link:\n%s", page.Body)
	}
}
