package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/restrictedmail/restrictedmail/tokenops"
)

// Request bodies are read whole, up to the configured size (413 beyond),
// checked for UTF-8 (encoding/json would silently replace bad bytes),
// and decoded strictly: an unknown field, a wrong type or trailing data
// is refused with a problem that names it.

// readBody reads a JSON request body of at most maxBytes.
func readBody(w http.ResponseWriter, r *http.Request, maxBytes int64) ([]byte, *Problem) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return nil, problem(http.StatusUnsupportedMediaType, ReasonUnsupportedType,
			"send the body as application/json (UTF-8)").withHeader("Accept", "application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, problem(http.StatusRequestEntityTooLarge, ReasonTooLarge, fmt.Sprintf("the body must not exceed %d bytes", maxBytes))
	case err != nil:
		return nil, problem(http.StatusBadRequest, ReasonMalformed, "the body could not be read")
	}
	return body, nil
}

// parseJSON decodes body, one JSON object, into v strictly.
func parseJSON(body []byte, v any) *Problem {
	if len(bytes.TrimSpace(body)) == 0 {
		return problem(http.StatusBadRequest, ReasonMalformed, "the body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return problem(http.StatusBadRequest, ReasonMalformed, "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return problem(http.StatusBadRequest, ReasonMalformed, "the body holds more than one JSON value")
	}
	return nil
}

// jsonProblem turns a decoding error into a problem without internal text.
func jsonProblem(err error) *Problem {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return problem(http.StatusBadRequest, ReasonMalformed, fmt.Sprintf("the body is not well-formed JSON (at byte %d)", syntax.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return problem(http.StatusBadRequest, ReasonMalformed, "the body must be a JSON object")
		}
		return invalid(field, "must be "+jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, ReasonMalformed, "the body ends in the middle of a JSON value")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid(strings.Trim(name, `"`), "is not a field of this request")
	}
	return problem(http.StatusBadRequest, ReasonMalformed, "the body is not a valid JSON object for this request")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int64":
		return "an integer"
	case "slice":
		return "an array"
	case "ptr":
		return "a value of the documented type"
	}
	return "of the documented type"
}

// issueBody is the body of POST /lists/{address}/tokens.
type issueBody struct {
	Sender      *string  `json:"sender"`
	TTL         *string  `json:"ttl"`
	Uses        *int     `json:"uses"`
	Recipients  []string `json:"recipients"`
	HideSender  *bool    `json:"hide_sender"`
	Owner       *string  `json:"owner"`
	ExternalRef *string  `json:"external_ref"`
	Report      *string  `json:"report"`
}

// decodeIssue reads an issue request for list from body.
func decodeIssue(list string, body []byte) (tokenops.IssueRequest, *Problem) {
	var b issueBody
	if p := parseJSON(body, &b); p != nil {
		return tokenops.IssueRequest{}, p
	}
	req := tokenops.IssueRequest{List: list, Recipients: b.Recipients}
	if b.Sender != nil {
		req.Sender = *b.Sender
	}
	if b.TTL != nil {
		d, err := tokenops.ParseTTL(*b.TTL)
		if err != nil {
			return req, invalid("ttl", err.Error())
		}
		req.TTL = &d
	}
	if b.Uses != nil {
		if *b.Uses < 1 || *b.Uses > maxUses {
			return req, invalid("uses", fmt.Sprintf("must be from 1 to %d", maxUses))
		}
		req.Uses = *b.Uses
	}
	if b.HideSender != nil {
		req.HideSender = *b.HideSender
	}
	if b.Owner != nil {
		req.Owner = *b.Owner
	}
	if b.ExternalRef != nil {
		req.ExternalRef = *b.ExternalRef
	}
	if b.Report != nil {
		req.Report = *b.Report
	}
	return req, nil
}

// maxUses bounds uses: a token for a thousand mailings is a list
// password, not a posting token.
const maxUses = 1000

// recipientsBody is the body of PUT /tokens/{id}/recipients.
type recipientsBody struct {
	Recipients *[]string `json:"recipients"`
}

func decodeRecipients(body []byte) ([]string, *Problem) {
	var b recipientsBody
	if p := parseJSON(body, &b); p != nil {
		return nil, p
	}
	if b.Recipients == nil {
		return nil, invalid("recipients", "is required (an empty array: the list's own recipients)")
	}
	return *b.Recipients, nil
}

// ttlForLog keeps a request's TTL printable.
func ttlForLog(d *time.Duration) string {
	if d == nil {
		return "default"
	}
	return d.String()
}
