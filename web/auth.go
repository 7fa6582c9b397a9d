package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/store"
)

// sessionCookie holds the session's secret; the store has its hash.
const sessionCookie = "rm_session"

// person is who is signed in, and what they may see.
type person struct {
	Email  address.Address
	Admin  bool
	lists  map[string]bool // list keys owned (admins: every list)
	hash   [32]byte        // the session's hash
	csrf   string
	secret string // the session cookie's value, when it was made by this request
}

// may reports whether p may see and manage the list with key k.
func (p *person) may(k string) bool { return p.Admin || p.lists[k] }

// newSecret returns 32 random bytes as base64url, and their hash.
func newSecret() (string, [32]byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b), sha256.Sum256(b)
}

// hashSecret hashes a secret newSecret wrote; ok is false for anything
// else.
func hashSecret(s string) (h [32]byte, ok bool) {
	if len(s) != 43 {
		return h, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return h, false
	}
	return sha256.Sum256(b), true
}

// csrfOf derives a session's CSRF token from its hash: it needs no
// storage, is the same on every host, and reveals nothing of the secret.
func csrfOf(h [32]byte) string {
	m := sha256.Sum256(append([]byte("restrictedmail web csrf\x00"), h[:]...))
	return base64.RawURLEncoding.EncodeToString(m[:])
}

// identify returns who may act as signed in on r: the person of the
// trusted proxy's header when r comes from a trusted proxy (making a
// session for them when the cookie has none), else of the session
// cookie; nil when nobody is signed in (or may no longer sign in).
func (s *Server) identify(w http.ResponseWriter, r *http.Request, set Settings) (*person, error) {
	now := s.opts.Now()
	var (
		sess   store.WebSession
		h      [32]byte
		hasSes bool
	)
	if c, err := r.Cookie(sessionCookie); err == nil {
		if hh, ok := hashSecret(c.Value); ok {
			ws, err := s.opts.Store.WebSessionByHash(r.Context(), hh, now)
			switch {
			case err == nil:
				sess, h, hasSes = ws, hh, true
			case !errors.Is(err, store.ErrNoSignIn):
				return nil, err
			}
		}
	}
	if header := s.proxyUser(r, set); header != "" {
		a, err := address.Parse(header)
		if err != nil {
			s.log.Warn("trusted user header is not an address", "header", set.TrustedUserHeader)
			return nil, nil
		}
		if !hasSes || !strings.EqualFold(sess.Email, a.Key()) {
			p := s.personOf(a, set)
			if p == nil {
				return nil, nil
			}
			if err := s.startSession(w, r, p, set); err != nil {
				return nil, err
			}
			return p, nil
		}
	}
	if !hasSes {
		return nil, nil
	}
	a, err := address.Parse(sess.Email)
	if err != nil {
		return nil, nil
	}
	p := s.personOf(a, set)
	if p == nil {
		// No longer an owner or admin: the session is worth nothing.
		return nil, nil
	}
	p.hash, p.csrf = h, csrfOf(h)
	return p, nil
}

// personOf returns a with what a may see, or nil when a may not sign in.
func (s *Server) personOf(a address.Address, set Settings) *person {
	p := &person{Email: a, lists: map[string]bool{}}
	p.Admin = slices.ContainsFunc(set.Admins, a.Equal)
	for k, owners := range set.Owners {
		if slices.ContainsFunc(owners, a.Equal) {
			p.lists[k] = true
		}
	}
	if !p.Admin && len(p.lists) == 0 {
		return nil
	}
	return p
}

// mayEverSignIn: a is an admin or owns a list.
func (s *Server) mayEverSignIn(a address.Address, set Settings) bool {
	return s.personOf(a, set) != nil
}

// startSession records a new session for p and sets its cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, p *person, set Settings) error {
	secret, h := newSecret()
	now := s.opts.Now()
	if err := s.opts.Store.AddWebSession(r.Context(), h, p.Email.Key(), now, now.Add(set.SessionLifetime)); err != nil {
		return err
	}
	p.hash, p.csrf, p.secret = h, csrfOf(h), secret
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secureCookie(set), MaxAge: int(set.SessionLifetime / time.Second),
	})
	s.log.Info("signed in", "email", p.Email.String(), "admin", p.Admin)
	return nil
}

// secureCookie: the cookie is Secure whenever people reach the page over
// https (base_url), also when a TLS proxy talks to us over loopback in
// clear text; only an http base URL, which validation allows on loopback
// alone, leaves it off.
func secureCookie(set Settings) bool { return set.BaseURL == nil || set.BaseURL.Scheme != "http" }

// signedIn wraps a handler for signed-in people: others go to the sign-in
// page; a POST must carry the session's CSRF token.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *person, Settings)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		set := s.settings()
		p, err := s.identify(w, r, set)
		if err != nil {
			s.internalError(w, r, nil, "identifying the person signed in", err)
			return
		}
		if p == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			s.render(w, r, http.StatusForbidden, "message", nil, message{Title: "forbidden.title", Text: "forbidden.session", Link: "/signin", LinkT: "signin.title"})
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				s.render(w, r, http.StatusRequestEntityTooLarge, "message", p, message{Title: "error.title", Text: "error.form"})
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(p.csrf)) != 1 {
				s.log.Warn("form without the session's CSRF token refused", "path", r.URL.Path, "email", p.Email.String())
				s.render(w, r, http.StatusForbidden, "message", p, message{Title: "forbidden.title", Text: "forbidden.csrf"})
				return
			}
		}
		h(w, r, p, set)
	}
}

// fromTrustedProxy: r's peer is one of set's trusted proxies.
func fromTrustedProxy(r *http.Request, set Settings) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return slices.ContainsFunc(set.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// proxyUser returns the trusted header's value when r comes from a
// trusted proxy, else "".
func (s *Server) proxyUser(r *http.Request, set Settings) string {
	if set.TrustedUserHeader == "" || !fromTrustedProxy(r, set) {
		return ""
	}
	return strings.TrimSpace(r.Header.Get(set.TrustedUserHeader))
}

// clientIP is the address sign-in requests are counted by: the peer, or
// from a trusted proxy the last X-Forwarded-For entry (the one the proxy
// added).
func (s *Server) clientIP(r *http.Request, set Settings) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = "local"
	}
	if fromTrustedProxy(r, set) {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return ip.String()
			}
		}
	}
	return host
}

// signInForm asks for an address.
func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	set := s.settings()
	if p, err := s.identify(w, r, set); err == nil && p != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	data := signInData{}
	if r.URL.Query().Has("out") {
		data.Notice = "signin.signedout"
	}
	s.render(w, r, http.StatusOK, "signin", nil, data)
}

type signInData struct {
	Email  string
	Error  string // catalog key
	Notice string
}

func (signInData) title() string { return "signin.title" }

// signIn mails a sign-in link to an owner or admin. The answer is the
// same page, after the same work, whether or not the address may sign in:
// the link is made and mailed in the background.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	set := s.settings()
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, http.StatusRequestEntityTooLarge, "signin", nil, signInData{Error: "signin.bad"})
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("email"))
	a, err := address.Parse(raw)
	if err != nil || len(raw) > address.MaxLength {
		s.render(w, r, http.StatusBadRequest, "signin", nil, signInData{Email: trimForm(raw, 254), Error: "signin.bad"})
		return
	}
	now := s.opts.Now()
	ip := "client " + s.clientIP(r, set)
	addrKey := "address " + a.Key()
	if s.byAddr.Blocked(now, addrKey) || s.byIP.Blocked(now, ip) {
		s.render(w, r, http.StatusTooManyRequests, "message", nil, message{Title: "signin.title", Text: "signin.toomany"})
		return
	}
	// Every request counts, known address or not: the limit is on
	// requests, so it says nothing about which addresses exist.
	s.byAddr.Fail(now, addrKey)
	s.byIP.Fail(now, ip)
	if s.mayEverSignIn(a, set) {
		s.mailLink(a, s.language(w, r), set)
	}
	s.render(w, r, http.StatusOK, "message", nil, message{Title: "signin.title", Text: "signin.sent", Args: []any{a.String()}})
}

// mailLink makes a sign-in link for a and mails it, in the background.
func (s *Server) mailLink(a address.Address, lang string, set Settings) {
	if set.BaseURL == nil {
		s.log.Error("no base URL for sign-in links; set web.base_url", "email", a.String())
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.log.Warn("too many sign-in mails in flight; request dropped", "email", a.String())
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
		defer cancel()
		secret, h := newSecret()
		now := s.opts.Now()
		if err := s.opts.Store.AddSignInLink(ctx, h, a.Key(), now, now.Add(LinkLifetime)); err != nil {
			s.log.Error("recording a sign-in link", "email", a.String(), "err", err)
			return
		}
		link := set.BaseURL.JoinPath("signin", "link")
		link.RawQuery = "t=" + secret
		v := &view{cat: catalog[lang]}
		body := v.T("mail.body", a.String(), link.String(), int(LinkLifetime/time.Minute))
		if err := s.opts.Mailer.Send(ctx, a, v.T("mail.subject"), body); err != nil {
			s.log.Error("sending a sign-in link", "email", a.String(), "err", err)
			return
		}
		s.log.Info("sign-in link sent", "email", a.String())
	}()
}

// linkForm is where a mailed link leads: a button that signs in. A GET
// does not use the link, so that a mail scanner following links does not
// spend it.
func (s *Server) linkForm(w http.ResponseWriter, r *http.Request) {
	t := r.URL.Query().Get("t")
	if _, ok := hashSecret(t); !ok {
		s.render(w, r, http.StatusBadRequest, "message", nil, message{Title: "link.title", Text: "link.invalid", Link: "/signin", LinkT: "signin.again"})
		return
	}
	s.render(w, r, http.StatusOK, "link", nil, linkData{Secret: t})
}

type linkData struct{ Secret string }

func (linkData) title() string { return "link.title" }

// useLink spends a sign-in link and starts a session.
func (s *Server) useLink(w http.ResponseWriter, r *http.Request) {
	set := s.settings()
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	_ = r.ParseForm()
	h, ok := hashSecret(r.PostForm.Get("t"))
	invalid := message{Title: "link.title", Text: "link.invalid", Link: "/signin", LinkT: "signin.again"}
	if !ok {
		s.render(w, r, http.StatusBadRequest, "message", nil, invalid)
		return
	}
	email, err := s.opts.Store.UseSignInLink(r.Context(), h, s.opts.Now())
	switch {
	case errors.Is(err, store.ErrNoSignIn):
		s.log.Info("sign-in link refused: unknown, used or expired", "client", s.clientIP(r, set))
		s.render(w, r, http.StatusBadRequest, "message", nil, invalid)
		return
	case err != nil:
		s.internalError(w, r, nil, "using a sign-in link", err)
		return
	}
	a, err := address.Parse(email)
	var p *person
	if err == nil {
		p = s.personOf(a, set)
	}
	if p == nil {
		s.render(w, r, http.StatusBadRequest, "message", nil, invalid)
		return
	}
	if err := s.startSession(w, r, p, set); err != nil {
		s.internalError(w, r, nil, "starting a session", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// signOut ends the session.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	if err := s.opts.Store.DeleteWebSession(r.Context(), p.hash); err != nil {
		s.internalError(w, r, p, "signing out", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secureCookie(set), MaxAge: -1})
	s.log.Info("signed out", "email", p.Email.String())
	http.Redirect(w, r, "/signin?out=1", http.StatusSeeOther)
}

// trimForm bounds a value echoed back into a form.
func trimForm(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
