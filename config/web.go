package config

import (
	"fmt"
	"net/url"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
)

// Web configures the web page for list owners, served under / on the API's
// listener ([api] listen; the API stays under /api/v1/). It is off by
// default. Who may sign in: the owners of each [[lists]] (lists.owners)
// and the admins here, by a one-time link mailed to them, or through a
// trusted reverse proxy's header.
type Web struct {
	// Enabled serves the page; it needs api.listen.
	Enabled bool `toml:"enabled" reload:"restart"`
	// BaseURL is the page's address as people reach it (through a
	// proxy: the proxy's), for the sign-in links in mails. https, or
	// http to loopback. An https base URL makes the session cookie Secure.
	BaseURL string `toml:"base_url"`
	// Admins may sign in and see and manage every list's tokens.
	Admins []string `toml:"admins"`
	// TrustedUserHeader names a header ("X-Forwarded-User") that a
	// single-sign-on proxy sets to the signed-in person's address;
	// honoured only from TrustedProxies. "" turns it off.
	TrustedUserHeader string `toml:"trusted_user_header"`
	// TrustedProxies are the reverse proxies whose TrustedUserHeader and
	// X-Forwarded-For are believed.
	TrustedProxies []string `toml:"trusted_proxies"`
	// SessionLifetime is how long a sign-in lasts.
	SessionLifetime Duration `toml:"session_lifetime"`
	// SignInFrom is the From and envelope sender of the sign-in mails;
	// "" is the bounce address of the first [[lists]].
	SignInFrom string `toml:"sign_in_from"`

	Base       *url.URL          `toml:"-"`
	AdminAddrs []address.Address `toml:"-"`
	Proxies    []NetworkSpec     `toml:"-"`
	From       address.Address   `toml:"-"` // SignInFrom or its default
}

// Defaults and bounds of [web].
const (
	DefaultSessionLifetime = 12 * time.Hour
	minSessionLifetime     = 5 * time.Minute
	maxSessionLifetime     = 30 * 24 * time.Hour
)

func defaultWeb() Web { return Web{SessionLifetime: Duration(DefaultSessionLifetime)} }

// web checks [web] and the lists' owners; it runs after lists().
func (v *validator) web() {
	c := v.cfg
	w := &c.Web
	owners := 0
	for i := range c.Lists {
		l := &c.Lists[i]
		l.OwnerAddrs = nil
		for j, s := range l.Owners {
			a, err := address.Parse(s)
			if err != nil {
				v.addf(fmt.Sprintf("lists[%d].owners[%d]", i, j), "%q: %v", s, err)
				continue
			}
			l.OwnerAddrs = append(l.OwnerAddrs, a)
			owners++
		}
	}
	w.AdminAddrs = nil
	for i, s := range w.Admins {
		a, err := address.Parse(s)
		if err != nil {
			v.addf(fmt.Sprintf("web.admins[%d]", i), "%q: %v", s, err)
			continue
		}
		w.AdminAddrs = append(w.AdminAddrs, a)
	}
	w.Proxies = nil
	for i, s := range w.TrustedProxies {
		p, err := parseNetwork(s)
		if err != nil {
			v.addf(fmt.Sprintf("web.trusted_proxies[%d]", i), "%v", err)
			continue
		}
		w.Proxies = append(w.Proxies, p)
	}
	if w.TrustedUserHeader != "" && len(w.TrustedProxies) == 0 {
		v.addf("web.trusted_user_header", "is honoured only from web.trusted_proxies; list the proxy's address there")
	}
	if d := w.SessionLifetime.D(); d < minSessionLifetime || d > maxSessionLifetime {
		v.addf("web.session_lifetime", "must be from %s to %s, not %s", minSessionLifetime, maxSessionLifetime, d)
	}
	w.Base = nil
	if w.BaseURL != "" {
		u, err := url.Parse(w.BaseURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.addf("web.base_url", "%q is not an http(s) URL such as \"https://lists.example.org/\"", w.BaseURL)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			v.addf("web.base_url", "%q: no user, query or fragment", w.BaseURL)
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			v.addf("web.base_url", "%q: sign-in links and sessions must not cross the network in clear text; use https (http only to loopback)", w.BaseURL)
		default:
			w.Base = u
		}
	}
	w.From = address.Address{}
	switch {
	case w.SignInFrom != "":
		a, err := address.Parse(w.SignInFrom)
		if err != nil {
			v.addf("web.sign_in_from", "%q: %v", w.SignInFrom, err)
		} else {
			w.From = a
		}
	case len(c.Lists) > 0:
		w.From = c.Lists[0].Bounce
	}
	if !w.Enabled {
		return
	}
	if c.API.Listen == "" {
		v.addf("web.enabled", "the page is served on the API's listener: set api.listen")
	}
	if w.BaseURL == "" {
		v.addf("web.base_url", "is required with web.enabled: the sign-in links in mails point there")
	}
	if owners == 0 && len(w.AdminAddrs) == 0 && w.TrustedUserHeader == "" {
		v.addf("web.admins", "nobody could sign in: set web.admins or lists.owners")
	}
	if w.From.Local == "" && w.SignInFrom == "" {
		v.addf("web.sign_in_from", "must be set when there are no [[lists]] (the sign-in mails need a sender)")
	} else if w.From.Local != "" && c.KeyFor(w.From.Domain) == nil {
		v.warnf("web.sign_in_from", "no [[dkim]] key for %s: sign-in mails will go out unsigned", w.From.Domain)
	}
}
