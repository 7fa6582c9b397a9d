package api

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Every answer that is not 2xx is an RFC 9457 problem document
// (application/problem+json) whose type is a stable URI per reason. The
// reasons a posting token is refused for reuse the words of the milter's
// verdicts (unknown_token, expired, used_up, revoked, wrong_list,
// throttled, malformed, tempfail), so that a portal, the metrics and the
// logs say the same thing. The detail is written for the client; internal
// error text never reaches it (it is logged).

// ProblemTypePrefix starts every problem type; the reason word follows.
const ProblemTypePrefix = "urn:restrictedmail:problem:"

// Problem reasons.
const (
	ReasonMalformed         = "malformed"              // 400: not JSON, not UTF-8, too deep
	ReasonUnauthorized      = "unauthorized"           // 401: no key, or not a valid key
	ReasonInsufficientScope = "insufficient_scope"     // 403: the key lacks the scope
	ReasonWrongList         = "wrong_list"             // 403: the key is not valid for this address
	ReasonNotFound          = "not_found"              // 404: no such resource
	ReasonUnknownList       = "unknown_list"           // 404: not a restricted address
	ReasonUnknownToken      = "unknown_token"          // 404: no such token (for this key)
	ReasonMethodNotAllowed  = "method_not_allowed"     // 405
	ReasonUsedUp            = "used_up"                // 409: every use spent
	ReasonExpired           = "expired"                // 409
	ReasonRevoked           = "revoked"                // 409
	ReasonTooLarge          = "too_large"              // 413
	ReasonUnsupportedType   = "unsupported_media_type" // 415
	ReasonInvalid           = "invalid_request"        // 422: field errors in "errors"
	ReasonIdempotencyReused = "idempotency_key_reused" // 422: the key was used for another request
	ReasonThrottled         = "throttled"              // 429: too many failed authentications
	ReasonTempFail          = "tempfail"               // 503: the store did not answer
)

var titles = map[string]string{
	ReasonMalformed:         "The request body is not well-formed JSON",
	ReasonUnauthorized:      "A valid API key is required",
	ReasonInsufficientScope: "The API key does not have the scope this needs",
	ReasonWrongList:         "The API key is not valid for this address",
	ReasonNotFound:          "No such resource",
	ReasonUnknownList:       "Not a restricted address",
	ReasonUnknownToken:      "No such token",
	ReasonMethodNotAllowed:  "Method not allowed",
	ReasonUsedUp:            "The token is used up",
	ReasonExpired:           "The token has expired",
	ReasonRevoked:           "The token is revoked",
	ReasonTooLarge:          "The request body is too large",
	ReasonUnsupportedType:   "Send application/json",
	ReasonInvalid:           "The request has invalid fields",
	ReasonIdempotencyReused: "The idempotency key was used for a different request",
	ReasonThrottled:         "Too many failed authentications; try again later",
	ReasonTempFail:          "Temporary failure; try again later",
}

// FieldProblem is one wrong field of a request.
type FieldProblem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Problem is an RFC 9457 problem document with the field errors of a 422.
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   []FieldProblem `json:"errors,omitempty"`

	reason string
	header http.Header // extra headers (WWW-Authenticate, Retry-After, Allow)
}

// problem returns the problem of reason with status and detail.
func problem(status int, reason, detail string) *Problem {
	return &Problem{Type: ProblemTypePrefix + reason, Title: titles[reason], Status: status, Detail: detail, reason: reason}
}

// invalid is a 422 naming one field.
func invalid(field, detail string) *Problem {
	p := problem(http.StatusUnprocessableEntity, ReasonInvalid, "")
	p.Errors = []FieldProblem{{Field: field, Detail: detail}}
	p.Detail = field + ": " + detail
	return p
}

func (p *Problem) withHeader(k, v string) *Problem {
	if p.header == nil {
		p.header = http.Header{}
	}
	p.header.Add(k, v)
	return p
}

func (p *Problem) retryAfter(seconds int) *Problem {
	return p.withHeader("Retry-After", strconv.Itoa(max(seconds, 1)))
}

// write sends p; the one place a problem reaches the wire.
func (p *Problem) write(w http.ResponseWriter, r *http.Request) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	for k, vs := range p.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
