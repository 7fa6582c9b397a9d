package config

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// API configures the HTTP JSON API under /api/v1/ that portals use to
// issue and manage tokens. It is off by default. Off loopback it needs
// allowed_networks and TLS.
type API struct {
	// Listen is "inet:HOST:PORT" or "unix:/path"; "" disables the API.
	Listen string `toml:"listen" reload:"restart"`
	// AllowedNetworks are the client networks; required when Listen is
	// not loopback.
	AllowedNetworks []string `toml:"allowed_networks"`
	// TLSCertFile and TLSKeyFile are a PEM certificate chain and its key;
	// required off loopback. A reload reads them again (renewed
	// certificates); turning TLS on or off needs a restart.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// MaxBodySize bounds a request body, in bytes (larger: 413).
	MaxBodySize int64 `toml:"max_body_size"`
	// AuthFailureLimit is how many failed authentications one client
	// address may make within AuthFailureWindow; then it gets 429 for
	// AuthFailureBlock. 0 turns the limit off.
	AuthFailureLimit  int      `toml:"auth_failure_limit"`
	AuthFailureWindow Duration `toml:"auth_failure_window"`
	AuthFailureBlock  Duration `toml:"auth_failure_block"`
	// AuthFailureDelay is how long a failed authentication waits before
	// its 401.
	AuthFailureDelay Duration `toml:"auth_failure_delay"`

	Addr     Listen        `toml:"-" reload:"restart,with=listen"`
	Networks []NetworkSpec `toml:"-"`
	// Certificate is read from the two files while loading (nil without
	// TLS).
	Certificate *tls.Certificate `toml:"-"`
}

// TLS reports whether the API is served over TLS.
func (a *API) TLS() bool { return a.TLSCertFile != "" }

// Webhook is one [[webhooks]] endpoint: where the events of deliveries
// and tokens are posted, signed (Standard Webhooks), at least once.
type Webhook struct {
	// URL receives the events by POST: https, or http to loopback.
	URL string `toml:"url"`
	// SecretFile holds the signing secret: "whsec_" and base64, as the
	// Standard Webhooks libraries write it, or the raw secret (at least 16
	// bytes).
	SecretFile string `toml:"secret_file"`
	// Events are the event types sent; default all of
	// delivery.completed, token.spent, delivery.failed_recipients.
	Events []string `toml:"events"`
	// Timeout bounds one attempt (default 10s).
	Timeout Duration `toml:"timeout"`
	// Backoff is the wait before the first retry; it doubles with each
	// attempt up to an hour (default 5s).
	Backoff Duration `toml:"backoff"`
	// GiveUpAfter: a message still failing this long after its event is
	// recorded as failed (default 3d).
	GiveUpAfter Duration `toml:"give_up_after"`

	Secret []byte `toml:"-"` // read from SecretFile
}

// WebhookEvents are the event types a [[webhooks]] may ask for.
var WebhookEvents = []string{"delivery.completed", "token.spent", "delivery.failed_recipients"}

// Defaults of the [api] and [[webhooks]] keys.
const (
	DefaultAPIMaxBodySize   = 1 << 20
	DefaultMaxRecipients    = 5000
	defaultWebhookTimeout   = 10 * time.Second
	defaultWebhookBackoff   = 5 * time.Second
	defaultWebhookGiveUp    = 72 * time.Hour
	minWebhookSecretLength  = 16
	maxAuthFailureDelayTime = 10 * time.Second
)

// defaultAPI is the [api] a file leaves out.
func defaultAPI() API {
	return API{
		MaxBodySize:       DefaultAPIMaxBodySize,
		AuthFailureLimit:  10,
		AuthFailureWindow: Duration(10 * time.Minute),
		AuthFailureBlock:  Duration(15 * time.Minute),
		AuthFailureDelay:  Duration(time.Second),
	}
}

// api checks the [api] section.
func (v *validator) api() {
	a := &v.cfg.API
	a.Addr, a.Networks = v.listener("api", a.Listen, a.AllowedNetworks)
	a.Certificate = nil
	switch {
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		v.addf("api.tls_key_file", "api.tls_cert_file and api.tls_key_file go together: set both or neither")
	case a.TLSCertFile != "":
		a.TLSCertFile, a.TLSKeyFile = v.path(a.TLSCertFile), v.path(a.TLSKeyFile)
		v.secretFile("api.tls_key_file", a.TLSKeyFile)
		cert, err := tls.LoadX509KeyPair(a.TLSCertFile, a.TLSKeyFile)
		if err != nil {
			v.addf("api.tls_cert_file", "cannot load the certificate and key: %v", err)
		} else {
			a.Certificate = &cert
		}
	}
	if a.Listen != "" && a.Addr.Network == "tcp" && !a.Addr.IsLoopback() && a.TLSCertFile == "" {
		v.addf("api.listen", "%s is reachable from the network: API keys and tokens must not cross it in clear text; set api.tls_cert_file and api.tls_key_file", a.Listen)
	}
	if a.MaxBodySize < 1024 || a.MaxBodySize > 64<<20 {
		v.addf("api.max_body_size", "must be from 1024 to %d bytes, not %d", 64<<20, a.MaxBodySize)
	}
	switch {
	case a.AuthFailureLimit < 0:
		v.addf("api.auth_failure_limit", "must be 0 (off) or more, not %d", a.AuthFailureLimit)
	case a.AuthFailureLimit > 0 && a.AuthFailureWindow.D() <= 0:
		v.addf("api.auth_failure_window", "must be longer than 0 while auth_failure_limit is set")
	case a.AuthFailureLimit > 0 && a.AuthFailureBlock.D() <= 0:
		v.addf("api.auth_failure_block", "must be longer than 0 while auth_failure_limit is set")
	}
	if a.AuthFailureDelay.D() > maxAuthFailureDelayTime {
		v.addf("api.auth_failure_delay", "must be at most %s", maxAuthFailureDelayTime)
	}
	if v.cfg.Tokens.MaxRecipients < 1 {
		v.addf("tokens.max_recipients", "must be at least 1, not %d", v.cfg.Tokens.MaxRecipients)
	}
}

// webhooks checks the [[webhooks]].
func (v *validator) webhooks() {
	seen := map[string]bool{}
	for i := range v.cfg.Webhooks {
		w := &v.cfg.Webhooks[i]
		key := fmt.Sprintf("webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			v.addf(key+".url", "must name the endpoint (https://portal.example.org/hooks/restrictedmail)")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.addf(key+".url", "%q is not an http(s) URL", w.URL)
		case u.User != nil:
			v.addf(key+".url", "must not carry a user or password; the signature authenticates the events")
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			v.addf(key+".url", "%q: events name senders and recipients; use https (http only to loopback)", w.URL)
		case seen[w.URL]:
			v.addf(key+".url", "%s is configured twice", w.URL)
		}
		seen[w.URL] = true
		if w.SecretFile == "" {
			v.addf(key+".secret_file", "must name the file with the signing secret")
		} else {
			w.SecretFile = v.path(w.SecretFile)
			v.secretFile(key+".secret_file", w.SecretFile)
			if data, err := os.ReadFile(w.SecretFile); err != nil {
				v.addf(key+".secret_file", "cannot read: %v", err)
			} else if w.Secret, err = webhookSecret(strings.TrimSpace(string(data))); err != nil {
				v.addf(key+".secret_file", "%s: %v", w.SecretFile, err)
			}
		}
		if len(w.Events) == 0 {
			w.Events = slices.Clone(WebhookEvents)
		}
		for j, e := range w.Events {
			if !slices.Contains(WebhookEvents, e) {
				v.addf(fmt.Sprintf("%s.events[%d]", key, j), "%q is not one of %s", e, strings.Join(WebhookEvents, ", "))
			}
		}
		if w.Timeout == 0 {
			w.Timeout = Duration(defaultWebhookTimeout)
		}
		if w.Backoff == 0 {
			w.Backoff = Duration(defaultWebhookBackoff)
		}
		if w.GiveUpAfter == 0 {
			w.GiveUpAfter = Duration(defaultWebhookGiveUp)
		}
	}
}

// webhookSecret reads a signing secret: "whsec_" + base64, or raw.
func webhookSecret(s string) ([]byte, error) {
	var b []byte
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		var err error
		if b, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return nil, fmt.Errorf("the secret after \"whsec_\" is not base64")
		}
	} else {
		b = []byte(s)
	}
	if len(b) < minWebhookSecretLength {
		return nil, fmt.Errorf("the secret has %d bytes; use at least %d (openssl rand -base64 32)", len(b), minWebhookSecretLength)
	}
	return b, nil
}
