// Package web is the web page for list owners: the people who run a
// restricted address (a board's secretary, an event's organiser) sign in
// with a one-time link mailed to them (or through a trusted single-sign-on
// proxy), and issue, hand over, follow and revoke the posting tokens of
// their lists without a shell. It is an adapter like api/: it
// authenticates, reads forms and renders html/template pages, and calls
// tokenops — the one implementation of every token operation — for the
// work. It is served under / on the API's listener.
//
// Pages work without JavaScript (one small script of its own adds copy
// buttons) and carry a strict Content-Security-Policy (no inline script or
// style), Cache-Control: no-store (a token secret is
// shown once, on the page right after issuing or re-keying, and must not
// stay in a cache) and Referrer-Policy: no-referrer (a sign-in link's
// secret is in its URL). State-changing requests pass Go's
// http.CrossOriginProtection and carry a CSRF token derived from the
// session's secret. Sessions and sign-in links are in the store by the
// SHA-256 of their secret. No secret is ever logged.
//
// A person sees and touches only the lists they own (lists.owners);
// admins ([web] admins) see all. A token of another list is answered as
// if it did not exist.
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the page needs; *store.DB satisfies it.
type Store interface {
	tokenops.Store
	AddSignInLink(ctx context.Context, hash [32]byte, email string, now, expires time.Time) error
	UseSignInLink(ctx context.Context, hash [32]byte, now time.Time) (string, error)
	AddWebSession(ctx context.Context, hash [32]byte, email string, now, expires time.Time) error
	WebSessionByHash(ctx context.Context, hash [32]byte, now time.Time) (store.WebSession, error)
	DeleteWebSession(ctx context.Context, hash [32]byte) error
	FailedRecipients(ctx context.Context, since time.Time) (map[string]int64, error)
}

var _ Store = (*store.DB)(nil)

// Mailer sends one plain-text mail: the sign-in links. The daemon's
// implementation goes through the relay, DKIM-signed like the copies.
type Mailer interface {
	Send(ctx context.Context, to address.Address, subject, body string) error
}

// Settings are what one configuration generation gives the page; read per
// request, so that a reload applies to the next one.
type Settings struct {
	Tokens tokenops.Settings
	// BaseURL is where people reach the page; the sign-in links point
	// there. An https BaseURL makes the session cookie Secure.
	BaseURL *url.URL
	Admins  []address.Address
	// Owners are each list's owners, by the list's address.Key.
	Owners map[string][]address.Address
	// TrustedUserHeader, from a client in TrustedProxies, names the person
	// signed in by a single-sign-on proxy. TrustedProxies' X-Forwarded-For
	// is the client address that sign-in requests are limited by.
	TrustedUserHeader string
	TrustedProxies    []netip.Prefix
	SessionLifetime   time.Duration // 0: DefaultSessionLifetime
}

// Limits of the page.
const (
	DefaultSessionLifetime = 12 * time.Hour
	// LinkLifetime is how long a mailed sign-in link works (once).
	LinkLifetime = 15 * time.Minute
	// maxForm bounds a form body; the recipients of a large token fit.
	maxForm = 1 << 20
	// failedSince: the overview counts the failed recipients of the
	// deliveries of this last period.
	failedSince = 30 * 24 * time.Hour
	// maxShownRecipients bounds the recipients listed per delivery.
	maxShownRecipients = 500
	// mailSlots bounds the sign-in mails being sent at once; beyond it a
	// request is dropped (and logged), never queued without bound.
	mailSlots = 16
)

// Options configure a Server.
type Options struct {
	Store    Store
	Settings func() Settings
	Mailer   Mailer
	Logger   *slog.Logger     // nil: none
	Now      func() time.Time // nil: time.Now
	// SignInLimits bound the sign-in requests per address and per client
	// (zero: DefaultSignInLimits).
	SignInLimits guard.Limits
}

// DefaultSignInLimits: 5 sign-in requests per address or 20 per client
// within 15 minutes, then 15 minutes of refusals. The client limit is
// four times this.
var DefaultSignInLimits = guard.Limits{Limit: 5, Window: 15 * time.Minute, Block: 15 * time.Minute}

// Server serves the page. It is safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	pages   map[string]*template.Template
	handler http.Handler
	byAddr  *guard.Guard // sign-in requests per address
	byIP    *guard.Guard // sign-in requests per client
	slots   chan struct{}
	wg      sync.WaitGroup
	ctx     context.Context // background work (mails); cancelled by Close
	cancel  context.CancelFunc
}

// New returns a server.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SignInLimits == (guard.Limits{}) {
		opts.SignInLimits = DefaultSignInLimits
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: opts.Logger, pages: pages, slots: make(chan struct{}, mailSlots)}
	s.byAddr = guard.New(opts.SignInLimits, 0)
	ipLimits := opts.SignInLimits
	ipLimits.Limit *= 4
	s.byIP = guard.New(ipLimits, 0)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// Close cancels the sign-in mails still being sent and waits for them.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// Wait waits until the sign-in mails being sent are sent (tests).
func (s *Server) Wait() { s.wg.Wait() }

func (s *Server) settings() Settings {
	set := s.opts.Settings()
	if set.SessionLifetime <= 0 {
		set.SessionLifetime = DefaultSessionLifetime
	}
	return set
}

func (s *Server) ops(set Settings) *tokenops.Ops {
	return tokenops.New(s.opts.Store, set.Tokens).WithClock(s.opts.Now)
}

// ServeHTTP serves the page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheable(http.FileServerFS(static))))
	mux.HandleFunc("GET /signin", s.signInForm)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("GET /signin/link", s.linkForm)
	mux.HandleFunc("POST /signin/link", s.useLink)
	mux.HandleFunc("POST /signout", s.signedIn(s.signOut))
	mux.HandleFunc("GET /{$}", s.signedIn(s.overview))
	mux.HandleFunc("GET /lists/{list}/", s.signedIn(s.listTokens))
	mux.HandleFunc("GET /lists/{list}/issue", s.signedIn(s.issueForm))
	mux.HandleFunc("POST /lists/{list}/issue", s.signedIn(s.issue))
	mux.HandleFunc("GET /tokens/{id}", s.signedIn(s.tokenPage))
	mux.HandleFunc("GET /tokens/{id}/revoke", s.signedIn(s.revokeForm))
	mux.HandleFunc("POST /tokens/{id}/revoke", s.signedIn(s.revoke))
	mux.HandleFunc("GET /tokens/{id}/rekey", s.signedIn(s.rekeyForm))
	mux.HandleFunc("POST /tokens/{id}/rekey", s.signedIn(s.rekey))
	mux.HandleFunc("POST /tokens/{id}/file", s.signedIn(s.tokenFile))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusNotFound, "message", nil, message{Title: "notfound.title", Text: "notfound.text"})
	})
	cop := http.NewCrossOriginProtection()
	if b := s.opts.Settings().BaseURL; b != nil {
		// Behind a proxy that does not pass Host on, the browser's Origin
		// is the base URL's.
		_ = cop.AddTrustedOrigin(b.Scheme + "://" + b.Host)
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "client", s.clientIP(r, s.settings()))
		s.render(w, r, http.StatusForbidden, "message", nil, message{Title: "forbidden.title", Text: "forbidden.crossorigin"})
	}))
	return secure(cop.Handler(mux))
}

// csp allows the page's own stylesheet and its one small script (copy
// buttons) and nothing else: no inline script or style, no framing, forms
// posted only to the page itself.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the headers every answer carries.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// cacheable lets the stylesheet be cached (it holds no secret).
func cacheable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// internalError logs err and answers 500 without its text.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, who *person, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.log.Error(what, "path", r.URL.Path, "err", err)
	s.render(w, r, http.StatusInternalServerError, "message", who, message{Title: "error.title", Text: "error.text"})
}
