package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/text/language"
)

// pageNames are the templates, each with templates/layout.html.
var pageNames = []string{"message", "signin", "link", "overview", "list", "issue", "issued", "token", "confirm"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parsing the %s page: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every template gets: the language and its catalog, who is
// signed in, the CSRF token of their session, and the page's own data.
type view struct {
	Lang  string
	Path  string // this page's path and query, for the language switch
	Query url.Values
	Who   *person
	CSRF  string
	Data  any
	Title string // catalog key of the page's title
	cat   map[string]string
}

// T returns the catalog's text for key in the page's language, formatted
// with args.
func (v *view) T(key string, args ...any) string {
	s, ok := v.cat[key]
	if !ok {
		s = catalog["en"][key]
		if s == "" {
			return key
		}
	}
	if len(args) == 0 {
		return s
	}
	return fmt.Sprintf(s, args...)
}

// message is the data of the "message" page: a title and a sentence.
type message struct {
	Title string // catalog keys
	Text  string
	Args  []any
	Link  string // a link to go on with ("" none)
	LinkT string // its catalog key
}

// titled pages give their title key.
type titled interface{ title() string }

func (m message) title() string { return m.Title }

// render writes page name with data, in the request's language.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, who *person, data any) {
	lang := s.language(w, r)
	v := &view{Lang: lang, Path: r.URL.Path, Query: r.URL.Query(), Who: who, Data: data, cat: catalog[lang]}
	if who != nil {
		v.CSRF = who.csrf
	}
	if t, ok := data.(titled); ok {
		v.Title = t.title()
	}
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, v); err != nil {
		s.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var langMatcher = language.NewMatcher([]language.Tag{language.English, language.MustParse("nb")})

// language picks the page's language: ?lang= (remembered in a cookie),
// the cookie, then Accept-Language; English when nothing matches.
func (s *Server) language(w http.ResponseWriter, r *http.Request) string {
	if q := r.URL.Query().Get("lang"); catalog[q] != nil {
		http.SetCookie(w, &http.Cookie{Name: "lang", Value: q, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		return q
	}
	if c, err := r.Cookie("lang"); err == nil && catalog[c.Value] != nil {
		return c.Value
	}
	accept := r.Header.Get("Accept-Language")
	if len(accept) > 200 {
		accept = accept[:200]
	}
	// Norwegian without a written standard ("no") and Nynorsk readers
	// read Bokmål better than English.
	accept = strings.NewReplacer("nn", "nb").Replace(strings.ToLower(accept))
	tag, _ := language.MatchStrings(langMatcher, accept)
	if base, _ := tag.Base(); base.String() == "nb" || base.String() == "no" {
		return "nb"
	}
	return "en"
}

// Msg is a message page's sentence.
func (v *view) Msg(m message) string { return v.T(m.Text, m.Args...) }

// LangURL is this page in another language (a sign-in link's page keeps
// its link).
func (v *view) LangURL(lang string) string {
	q := url.Values{}
	for k, vs := range v.Query {
		q[k] = vs
	}
	q.Set("lang", lang)
	return v.Path + "?" + q.Encode()
}
