// Package apitest is a test harness: an HTTP client for restrictedmail's
// API that validates every request it sends and every response it gets
// against api/openapi.yaml with kin-openapi, so that the document cannot
// drift from the code. Only tests import it; kin-openapi never reaches the
// binary.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/restrictedmail/restrictedmail/api"
)

// Client talks to one API.
type Client struct {
	Base   string // e.g. http://127.0.0.1:8027 (without /api/v1)
	Key    string // the API key; "" sends none
	HTTP   *http.Client
	router routers.Router

	mu        sync.Mutex
	exchanges int
}

// Load parses the embedded document (failing t when it is not valid
// OpenAPI 3) and returns a client for base.
func New(t testing.TB, base, key string) *Client {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("api/openapi.yaml is not valid OpenAPI: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base + api.Base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("routing api/openapi.yaml: %v", err)
	}
	return &Client{Base: base, Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}, router: router}
}

// WithKey returns a client that sends another key.
func (c *Client) WithKey(key string) *Client {
	return &Client{Base: c.Base, Key: key, HTTP: c.HTTP, router: c.router}
}

// Response is an answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing t.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// Problem is the body of a problem answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field  string `json:"field"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// Problem decodes a problem answer, checking its media type and status.
func (r *Response) Problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.Status, ct, r.Body)
	}
	var p Problem
	r.JSON(t, &p)
	if p.Status != r.Status {
		t.Errorf("problem status %d, HTTP status %d", p.Status, r.Status)
	}
	return p
}

// Reason is the problem type's reason word.
func (p Problem) Reason() string { return strings.TrimPrefix(p.Type, api.ProblemTypePrefix) }

// Request is one exchange to make.
type Request struct {
	Method string
	Path   string // under /api/v1, e.g. /lists/board@example.org/tokens?limit=5
	Body   any    // marshalled to JSON unless []byte or string (sent as is)
	Header map[string]string
	// Invalid marks a request the test sends although it breaks the
	// document on purpose (hostile input): it is not validated, its
	// response is.
	Invalid bool
}

// Do makes the exchange and validates both halves; a violation fails t.
func (c *Client) Do(t testing.TB, r Request) *Response {
	t.Helper()
	var body []byte
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		body = b
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(r.Method, c.Base+api.Base+r.Path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	for k, v := range r.Header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	ctx := context.Background()
	route, params, rerr := c.router.FindRoute(req)
	var in *openapi3filter.RequestValidationInput
	if rerr == nil {
		in = &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		if !r.Invalid {
			vreq := req.Clone(ctx)
			vreq.Body = io.NopCloser(bytes.NewReader(body))
			in.Request = vreq
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Errorf("%s %s: the request does not match api/openapi.yaml: %v", r.Method, r.Path, err)
			}
			in.Request = req
		}
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", r.Method, r.Path, err)
	}
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	switch {
	case rerr == nil:
		rin := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		rin.SetBodyBytes(data)
		if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
			t.Errorf("%s %s: the answer (%d) does not match api/openapi.yaml: %v\n%s", r.Method, r.Path, resp.StatusCode, err, data)
		}
	case resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed:
		t.Errorf("%s %s is not in api/openapi.yaml but answered %d", r.Method, r.Path, resp.StatusCode)
	default:
		out.Problem(t) // an undocumented path: still a problem document
	}
	c.mu.Lock()
	c.exchanges++
	c.mu.Unlock()
	return out
}

// Exchanges is how many exchanges the client validated.
func (c *Client) Exchanges() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exchanges
}

// PathEscape escapes an address for a path.
func PathEscape(s string) string { return url.PathEscape(s) }
