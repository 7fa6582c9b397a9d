package web

import (
	"bytes"
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

const (
	board  = "board@example.org"  // owned by alice, two members
	events = "events@example.org" // owned by bob, no members
	alice  = "alice@example.org"
	bob    = "bob@example.org"
	root   = "root@example.org" // admin
)

// sentMail is one mail the page asked to send.
type sentMail struct {
	To            address.Address
	Subject, Body string
}

// captureMailer records mails; while hold is set, Send waits for it to be
// closed (to show that the page does not wait for the mail).
type captureMailer struct {
	mu    sync.Mutex
	mails []sentMail
	hold  chan struct{}
}

func (m *captureMailer) Send(ctx context.Context, to address.Address, subject, body string) error {
	m.mu.Lock()
	hold := m.hold
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mails = append(m.mails, sentMail{To: to, Subject: subject, Body: body})
	return nil
}

func (m *captureMailer) to(a string) []sentMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sentMail
	for _, s := range m.mails {
		if s.To.String() == a {
			out = append(out, s)
		}
	}
	return out
}

// lockedBuffer collects the page's log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t    testing.TB
	srv  *httptest.Server
	web  *Server
	db   *store.DB
	mail *captureMailer
	logs *lockedBuffer
	now  atomic.Int64 // unix seconds; the page's clock
	set  Settings
}

func mustAddr(t testing.TB, s string) address.Address {
	a, err := address.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newHarness(t testing.TB, mod func(*Settings)) *harness {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	lists := []*policy.List{
		{Addr: mustAddr(t, board), Bounce: mustAddr(t, "board-bounces@example.org"), Name: "Example Board", Members: []string{"m1@example.net", "m2@example.com"}},
		{Addr: mustAddr(t, events), Bounce: mustAddr(t, "events-bounces@example.org"), Name: "Events"},
	}
	rules := policy.NewRules("+", token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, lists)
	rules.Issue = policy.IssueDefaults{TTL: 72 * time.Hour, Uses: 1}
	h := &harness{t: t, db: db, mail: &captureMailer{}, logs: &lockedBuffer{}}
	h.now.Store(time.Now().Unix())
	h.srv = httptest.NewUnstartedServer(nil)
	base, _ := url.Parse("http://" + h.srv.Listener.Addr().String() + "/")
	h.set = Settings{
		Tokens:  tokenops.Settings{Rules: rules},
		BaseURL: base,
		Admins:  []address.Address{mustAddr(t, root)},
		Owners: map[string][]address.Address{
			mustAddr(t, board).Key():  {mustAddr(t, alice)},
			mustAddr(t, events).Key(): {mustAddr(t, bob)},
		},
	}
	if mod != nil {
		mod(&h.set)
	}
	h.web, err = New(Options{
		Store: db, Settings: func() Settings { return h.set }, Mailer: h.mail,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return time.Unix(h.now.Load(), 0) },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Config.Handler = h.web
	h.srv.Start()
	t.Cleanup(func() { h.srv.Close(); h.web.Close() })
	return h
}

// browser is one person's browser: a cookie jar, and the headers a
// browser sends with a same-origin form.
type browser struct {
	h      *harness
	c      *http.Client
	header http.Header
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{h: h, c: &http.Client{Jar: jar}, header: http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {h.srv.URL}}}
}

type resp struct {
	Status int
	Body   string
	Header http.Header
}

func (b *browser) do(method, path string, form url.Values, extra http.Header) resp {
	b.h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.h.srv.URL+path, body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range b.header {
			req.Header[k] = v
		}
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Body: string(data), Header: res.Header}
}

func (b *browser) get(path string) resp { b.h.t.Helper(); return b.do(http.MethodGet, path, nil, nil) }

func (b *browser) post(path string, form url.Values) resp {
	b.h.t.Helper()
	return b.do(http.MethodPost, path, form, nil)
}

var (
	csrfRe  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	linkRe  = regexp.MustCompile(`http://\S+/signin/link\?t=[A-Za-z0-9_-]+`)
	hiddenT = regexp.MustCompile(`name="t" value="([^"]+)"`)
	tokenRe = regexp.MustCompile(`id="token"[^>]*>([a-z0-9]+)<`)
	idRe    = regexp.MustCompile(`action="/tokens/([^/"]+)/file"`)
)

// csrf reads the CSRF token of the page at path.
func (b *browser) csrf() string {
	b.h.t.Helper()
	m := csrfRe.FindStringSubmatch(b.get("/").Body)
	if m == nil {
		b.h.t.Fatal("no CSRF token on the overview")
	}
	return m[1]
}

// linkFor asks for a sign-in link for email and returns it from the mail.
func (b *browser) linkFor(email string) string {
	b.h.t.Helper()
	before := len(b.h.mail.to(email))
	if r := b.post("/signin", url.Values{"email": {email}}); r.Status != http.StatusOK {
		b.h.t.Fatalf("sign-in request: %d\n%s", r.Status, r.Body)
	}
	b.h.web.Wait()
	mails := b.h.mail.to(email)
	if len(mails) != before+1 {
		b.h.t.Fatalf("%d sign-in mails to %s, want %d", len(mails), email, before+1)
	}
	link := linkRe.FindString(mails[len(mails)-1].Body)
	if link == "" {
		b.h.t.Fatalf("no link in the mail:\n%s", mails[len(mails)-1].Body)
	}
	return link
}

// useLink opens a link and presses Continue.
func (b *browser) useLink(link string) resp {
	b.h.t.Helper()
	u, _ := url.Parse(link)
	page := b.get(u.RequestURI())
	m := hiddenT.FindStringSubmatch(page.Body)
	if m == nil {
		b.h.t.Fatalf("link page without its form: %d\n%s", page.Status, page.Body)
	}
	return b.post("/signin/link", url.Values{"t": {html.UnescapeString(m[1])}})
}

// signIn signs email in through a mailed link.
func (b *browser) signIn(email string) {
	b.h.t.Helper()
	r := b.useLink(b.linkFor(email))
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "Your lists") {
		b.h.t.Fatalf("signing in %s: %d\n%s", email, r.Status, r.Body)
	}
}

// issue issues a token on list with form values and returns its id and
// secret from the page after issuing.
func (b *browser) issue(list string, form url.Values) (id, secret string, page resp) {
	b.h.t.Helper()
	form.Set("csrf", b.csrf())
	page = b.post("/lists/"+list+"/issue", form)
	if page.Status != http.StatusOK {
		b.h.t.Fatalf("issuing: %d\n%s", page.Status, page.Body)
	}
	tm, im := tokenRe.FindStringSubmatch(page.Body), idRe.FindStringSubmatch(page.Body)
	if tm == nil || im == nil {
		b.h.t.Fatalf("no token on the page after issuing:\n%s", page.Body)
	}
	return im[1], tm[1], page
}

func (h *harness) token(id string) token.Record {
	h.t.Helper()
	r, err := h.db.TokenByID(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func pasted(rcpts ...string) url.Values {
	return url.Values{"recipients_mode": {"pasted"}, "recipients": {strings.Join(rcpts, "\n")}, "ttl": {"7d"}, "uses": {"1"}}
}
