// Package api is the HTTP JSON adapter for portals (a web app such as
// LEGO): under /api/v1/ it issues, lists, re-keys and revokes posting
// tokens, replaces their recipients and reads their deliveries, for the
// holders of API keys (package apikey), each scoped to lists and verbs.
// It is an adapter like milter/ and lmtp/: it authenticates, decodes and
// encodes, and calls tokenops — the one implementation of every token
// operation, shared with the `restrictedmail token` commands — for the
// work. Errors are RFC 9457 problem documents (problem.go); the OpenAPI
// document (openapi.yaml) describes every request and response, and the
// tests validate their traffic against it.
//
// Secrets: a token and its token file are in the body of the response
// that issues or re-keys it, once, with Cache-Control: no-store; an API
// key is in the request's Authorization header. Neither is ever logged:
// the logs name the token's id and the key's name.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// OpenAPI is the OpenAPI 3 document of this API, served at
// /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Base is the path every resource is under.
const Base = "/api/v1"

// Store is what the API needs from a store; *store.DB satisfies it.
type Store interface {
	tokenops.Store
	APIKeyByHash(ctx context.Context, h [32]byte) (store.APIKey, error)
	TouchAPIKey(ctx context.Context, id string, now time.Time) error
}

var _ Store = (*store.DB)(nil)

// Limits are the settings a reload may change.
type Limits struct {
	MaxBodySize int64 // bytes; 0: 1 MiB
	// A client address that fails to authenticate FailureLimit times
	// within FailureWindow gets 429 for FailureBlock (FailureLimit 0: no
	// limit); each failure waits FailureDelay before its 401.
	FailureLimit  int
	FailureWindow time.Duration
	FailureBlock  time.Duration
	FailureDelay  time.Duration
}

func (l Limits) guard() guard.Limits {
	return guard.Limits{Limit: l.FailureLimit, Window: l.FailureWindow, Block: l.FailureBlock}
}

// Options configure a Server.
type Options struct {
	Store Store
	// Settings returns the token settings of the configuration in force
	// (read per request, so a reload applies to the next one).
	Settings func() tokenops.Settings
	Limits   Limits
	Logger   *slog.Logger     // nil: none
	Now      func() time.Time // nil: time.Now
}

// Server serves the API. It is safe for concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	guard  *guard.Guard // failed authentications per client address
	mu     sync.Mutex
	limits Limits
	used   map[string]time.Time // key id → last recorded use
}

// New returns a server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, used: map[string]time.Time{}}
	s.guard = guard.New(opts.Limits.guard(), 0)
	s.limits = opts.Limits
	return s
}

// SetLimits applies new limits (a reload); failures counted so far and
// blocks in force are kept.
func (s *Server) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l
	s.mu.Unlock()
	s.guard.SetLimits(l.guard())
}

func (s *Server) currentLimits() Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

func (s *Server) maxBody() int64 {
	if n := s.currentLimits().MaxBodySize; n > 0 {
		return n
	}
	return 1 << 20
}

// route is one resource and verb.
type route struct {
	method  string
	scope   string // "" needs no key
	handler func(*Server, *call) *Problem
}

// resources maps a path shape ("lists/{}/tokens": {} is a parameter) to
// its verbs.
var resources = map[string][]route{
	"openapi.yaml":         {{http.MethodGet, "", (*Server).openapi}},
	"lists":                {{http.MethodGet, "read", (*Server).lists}},
	"lists/{}/tokens":      {{http.MethodGet, "read", (*Server).listTokens}, {http.MethodPost, "issue", (*Server).issue}},
	"tokens/{}":            {{http.MethodGet, "read", (*Server).getToken}},
	"tokens/{}/rekey":      {{http.MethodPost, "issue", (*Server).rekey}},
	"tokens/{}/revoke":     {{http.MethodPost, "revoke", (*Server).revoke}},
	"tokens/{}/recipients": {{http.MethodPut, "issue", (*Server).replaceRecipients}},
	"tokens/{}/deliveries": {{http.MethodGet, "read", (*Server).deliveries}},
}

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	params []string // the path's parameters, unescaped
	key    store.APIKey
	client string
}

// ServeHTTP routes a request, authenticates it and runs its handler; a
// problem it returns is the answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, client: clientOf(r)}
	rt, p := match(r)
	if p == nil && rt.scope != "" {
		p = s.authenticate(c, rt.scope)
	}
	if p == nil {
		p = rt.handler(s, c)
	}
	if p != nil {
		p.write(w, r)
	}
}

// match finds the route of r: 404 for an unknown path, 405 for a known
// path and another method.
func match(r *http.Request) (route, *Problem) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Base+"/")
	if !ok {
		return route{}, problem(http.StatusNotFound, ReasonNotFound, "the API is under "+Base+"/")
	}
	segs := strings.Split(rest, "/")
	var params []string
	shape := make([]string, len(segs))
	for i, seg := range segs {
		shape[i] = seg
		// Parameters are the odd segments of lists/{}/… and tokens/{}/….
		if i == 1 && (segs[0] == "lists" || segs[0] == "tokens") {
			v, err := url.PathUnescape(seg)
			if err != nil || v == "" {
				return route{}, problem(http.StatusNotFound, ReasonNotFound, "no such resource")
			}
			params = append(params, v)
			shape[i] = "{}"
		}
	}
	routes, ok := resources[strings.Join(shape, "/")]
	if !ok {
		return route{}, problem(http.StatusNotFound, ReasonNotFound, "no such resource")
	}
	var allow []string
	for _, rt := range routes {
		if rt.method == r.Method {
			rt.handler = withParams(rt.handler, params)
			return rt, nil
		}
		allow = append(allow, rt.method)
	}
	return route{}, problem(http.StatusMethodNotAllowed, ReasonMethodNotAllowed, r.Method+" is not allowed here").
		withHeader("Allow", strings.Join(allow, ", "))
}

func withParams(h func(*Server, *call) *Problem, params []string) func(*Server, *call) *Problem {
	return func(s *Server, c *call) *Problem {
		c.params = params
		return h(s, c)
	}
}

// clientOf is the client's address without the port (the unit the
// failure limit counts), "local" for a unix socket.
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return "local"
	}
	return host
}

func (s *Server) openapi(c *call) *Problem {
	c.w.Header().Set("Content-Type", "application/yaml")
	c.w.Header().Set("Cache-Control", "max-age=300")
	_, _ = c.w.Write(OpenAPI)
	return nil
}
