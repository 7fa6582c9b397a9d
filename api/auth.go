package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/apikey"
	"github.com/restrictedmail/restrictedmail/store"
)

// Authentication is RFC 6750's Bearer scheme with an API key. A request
// without credentials gets 401 at once; a key that is malformed, unknown,
// revoked or expired counts as a failure of the client's address: it
// waits Limits.FailureDelay, then gets 401, and an address that reaches
// Limits.FailureLimit gets 429 for Limits.FailureBlock — before any
// lookup. Keys are compared by hash: the store looks the SHA-256 up and
// compares it again in constant time.

const realm = `Bearer realm="restrictedmail"`

// touchEvery is how often a key's last use is written to the store.
const touchEvery = time.Minute

// authenticate finds the request's key and checks that it has scope.
func (s *Server) authenticate(c *call, scope string) *Problem {
	now := s.opts.Now()
	clientKey := "api " + c.client
	if s.guard.Blocked(now, clientKey) {
		return problem(http.StatusTooManyRequests, ReasonThrottled, "too many failed authentications from this address").
			retryAfter(int(s.currentLimits().FailureBlock.Seconds()))
	}
	h := c.r.Header.Get("Authorization")
	if h == "" {
		return problem(http.StatusUnauthorized, ReasonUnauthorized, "send an API key: Authorization: Bearer rmk_…").
			withHeader("WWW-Authenticate", realm)
	}
	scheme, key, _ := strings.Cut(h, " ")
	key = strings.TrimSpace(key)
	k, err := s.lookup(c.r.Context(), scheme, key, now)
	if errors.Is(err, errBadKey) {
		if s.guard.Fail(now, clientKey) {
			s.log.Warn("too many failed API authentications: this address gets 429 for a while", "client", c.client)
		}
		s.log.Info("API authentication failed", "client", c.client, "path", c.r.URL.Path)
		s.delay(c.r.Context())
		return problem(http.StatusUnauthorized, ReasonUnauthorized, "the API key is not valid (unknown, revoked or expired)").
			withHeader("WWW-Authenticate", realm+`, error="invalid_token"`)
	}
	if err != nil {
		return s.tempfail(c, "looking up an API key", err)
	}
	c.key = k
	if !slices.Contains(k.Scopes, scope) {
		return problem(http.StatusForbidden, ReasonInsufficientScope, "this needs the scope \""+scope+"\"").
			withHeader("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+scope+`"`)
	}
	s.touch(c.r.Context(), k, now)
	return nil
}

var errBadKey = errors.New("bad API key")

func (s *Server) lookup(ctx context.Context, scheme, key string, now time.Time) (store.APIKey, error) {
	if !strings.EqualFold(scheme, "Bearer") || !apikey.Check(key) {
		return store.APIKey{}, errBadKey
	}
	k, err := s.opts.Store.APIKeyByHash(ctx, apikey.HashOf(key))
	switch {
	case errors.Is(err, store.ErrNoAPIKey):
		return store.APIKey{}, errBadKey
	case err != nil:
		return store.APIKey{}, err
	case k.Revoked, !k.Expires.IsZero() && !now.Before(k.Expires):
		return store.APIKey{}, errBadKey
	}
	return k, nil
}

// delay waits the failure delay, or until the client gives up.
func (s *Server) delay(ctx context.Context) {
	d := s.currentLimits().FailureDelay
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// touch records the key's use, at most once a minute per key.
func (s *Server) touch(ctx context.Context, k store.APIKey, now time.Time) {
	s.mu.Lock()
	last, ok := s.used[k.ID]
	if !ok {
		last = k.LastUsed
	}
	due := now.Sub(last) >= touchEvery
	if due {
		s.used[k.ID] = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.opts.Store.TouchAPIKey(ctx, k.ID, now); err != nil {
		s.log.Warn("recording an API key's use", "api_key", k.Name, "err", err)
	}
}

// covers reports whether the request's key may act on list (address.Key).
func (c *call) covers(list string) bool { return apikey.Covers(c.key.Lists, list) }

// tempfail logs an internal error and answers 503 without its text.
func (s *Server) tempfail(c *call, what string, err error) *Problem {
	s.log.Error("API: "+what, "err", err, "path", c.r.URL.Path, "api_key", c.key.Name)
	return problem(http.StatusServiceUnavailable, ReasonTempFail, "the store did not answer; try again later").retryAfter(5)
}
