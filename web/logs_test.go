package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestNoSecretInLogs: after a whole session — sign-in link, session,
// issue, download, re-key, revoke, sign out — the log names none of the
// secrets.
func TestNoSecretInLogs(t *testing.T) {
	h := newHarness(t, nil)
	b := h.browser()
	link := b.linkFor(alice)
	b.useLink(link)
	u, _ := url.Parse(link)
	linkSecret := u.Query().Get("t")
	var session string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			session = c.Value
		}
	}
	if session == "" || linkSecret == "" {
		t.Fatal("no session cookie or link secret")
	}
	csrf := b.csrf()
	id, secret, _ := b.issue(board, pasted("a@example.net"))
	b.post("/tokens/"+id+"/file", url.Values{"csrf": {csrf}, "token": {secret}})
	rk := b.post("/tokens/"+id+"/rekey", url.Values{"csrf": {csrf}})
	secret2 := tokenRe.FindStringSubmatch(rk.Body)[1]
	b.post("/tokens/"+id+"/revoke", url.Values{"csrf": {csrf}})
	b.do(http.MethodPost, "/tokens/"+id+"/revoke", url.Values{"csrf": {"x"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}})
	b.post("/signout", url.Values{"csrf": {csrf}})
	logs := h.logs.String()
	for name, s := range map[string]string{"link": linkSecret, "session": session, "csrf": csrf, "token": secret, "re-keyed token": secret2} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s secret", name)
		}
	}
	for _, want := range []string{"sign-in link sent", "signed in", "token issued", "token re-keyed", "token revoked", "cross-origin request refused", "signed out"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}
