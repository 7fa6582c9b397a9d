package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// maxDeliveryRecipients bounds the recipients one delivery lists in
// GET /tokens/{id}/deliveries (the counts cover them all).
const maxDeliveryRecipients = 10_000

func (s *Server) ops() *tokenops.Ops {
	return tokenops.New(s.opts.Store, s.opts.Settings()).WithClock(s.opts.Now)
}

// writeJSON sends a 2xx answer.
func writeJSON(w http.ResponseWriter, status int, v any) *Problem {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return nil
}

// list resolves the address in the path and checks the key covers it.
func (s *Server) list(c *call, ops *tokenops.Ops) (string, *Problem) {
	l, err := ops.List(c.params[0])
	if err != nil {
		return "", problem(http.StatusNotFound, ReasonUnknownList, "this is not a restricted address of this server")
	}
	if !c.covers(l.Addr.Key()) {
		return "", problem(http.StatusForbidden, ReasonWrongList, "the API key is not valid for "+l.Addr.String())
	}
	return l.Addr.String(), nil
}

// token loads the token in the path; a token of a list the key does not
// cover is not found (ids do not leak from one portal to another).
func (s *Server) token(c *call, ops *tokenops.Ops) (token.Record, *Problem) {
	rec, err := ops.Get(c.r.Context(), c.params[0])
	switch {
	case errors.Is(err, token.ErrNotFound), err == nil && !c.covers(rec.List):
		return rec, problem(http.StatusNotFound, ReasonUnknownToken, "no token with this id")
	case err != nil:
		return rec, s.tempfail(c, "reading a token", err)
	}
	return rec, nil
}

// refusal maps the errors of the operations onto problems.
func (s *Server) refusal(c *call, what string, err error) *Problem {
	var fe *tokenops.FieldError
	switch {
	case errors.As(err, &fe):
		return invalid(fe.Field, fe.Msg)
	case errors.Is(err, token.ErrNotFound):
		return problem(http.StatusNotFound, ReasonUnknownToken, "no token with this id")
	case errors.Is(err, tokenops.ErrUnknownList):
		return problem(http.StatusNotFound, ReasonUnknownList, "the token's address is no longer a restricted address")
	case errors.Is(err, token.ErrUsedUp):
		return problem(http.StatusConflict, ReasonUsedUp, "every use of the token is spent")
	case errors.Is(err, token.ErrExpired):
		return problem(http.StatusConflict, ReasonExpired, "the token has expired")
	case errors.Is(err, token.ErrRevoked):
		return problem(http.StatusConflict, ReasonRevoked, "the token is revoked")
	case errors.Is(err, store.ErrIdempotencyMismatch):
		p := problem(http.StatusUnprocessableEntity, ReasonIdempotencyReused,
			"this Idempotency-Key was used for a different request; use a new key for a new token")
		return p
	}
	return s.tempfail(c, what, err)
}

func (s *Server) issue(c *call) *Problem {
	ops := s.ops()
	list, p := s.list(c, ops)
	if p != nil {
		return p
	}
	body, p := readBody(c.w, c.r, s.maxBody())
	if p != nil {
		return p
	}
	req, p := decodeIssue(list, body)
	if p != nil {
		return p
	}
	if k := c.r.Header.Get("Idempotency-Key"); k != "" {
		if !validIdempotencyKey(k) {
			return invalid("Idempotency-Key", "must be 1 to 255 printable ASCII characters")
		}
		req.Idempotency = &tokenops.Idempotency{Scope: c.key.ID, Key: k}
	}
	iss, err := ops.Issue(c.r.Context(), req)
	if err != nil {
		return s.refusal(c, "issuing a token", err)
	}
	loc := Base + "/tokens/" + iss.Record.ID
	c.w.Header().Set("Location", loc)
	if iss.Replayed {
		// The secret was shown to the first request only: the retry gets
		// the record, and a portal that lost the secret re-keys.
		c.w.Header().Set("Idempotency-Replayed", "true")
		s.log.Info("API: issue replayed", "api_key", c.key.Name, "token_id", iss.Record.ID, "list", iss.Record.List, "client", c.client)
		return writeJSON(c.w, http.StatusOK, s.tokenJSON(iss.Record, true))
	}
	s.log.Info("API: token issued", "api_key", c.key.Name, "token_id", iss.Record.ID, "list", iss.Record.List,
		"sender", iss.Record.Sender, "uses", iss.Record.UsesAllowed, "ttl", ttlForLog(req.TTL),
		"recipients", len(iss.Record.Recipients), "owner", iss.Record.Owner, "external_ref", iss.Record.ExternalRef, "client", c.client)
	return writeJSON(c.w, http.StatusCreated, s.issuedJSON(iss))
}

func validIdempotencyKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < ' ' || k[i] > '~' {
			return false
		}
	}
	return true
}

func (s *Server) getToken(c *call) *Problem {
	rec, p := s.token(c, s.ops())
	if p != nil {
		return p
	}
	return writeJSON(c.w, http.StatusOK, s.tokenJSON(rec, true))
}

func (s *Server) rekey(c *call) *Problem {
	ops := s.ops()
	rec, p := s.token(c, ops)
	if p != nil {
		return p
	}
	iss, err := ops.Rekey(c.r.Context(), rec.ID)
	if err != nil {
		return s.refusal(c, "re-keying a token", err)
	}
	s.log.Info("API: token re-keyed", "api_key", c.key.Name, "token_id", rec.ID, "list", rec.List, "client", c.client)
	return writeJSON(c.w, http.StatusOK, s.issuedJSON(iss))
}

func (s *Server) revoke(c *call) *Problem {
	ops := s.ops()
	rec, p := s.token(c, ops)
	if p != nil {
		return p
	}
	if _, err := ops.Revoke(c.r.Context(), rec.ID); err != nil {
		return s.refusal(c, "revoking a token", err)
	}
	s.log.Info("API: token revoked", "api_key", c.key.Name, "token_id", rec.ID, "list", rec.List, "client", c.client)
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) replaceRecipients(c *call) *Problem {
	ops := s.ops()
	rec, p := s.token(c, ops)
	if p != nil {
		return p
	}
	body, p := readBody(c.w, c.r, s.maxBody())
	if p != nil {
		return p
	}
	rcpts, p := decodeRecipients(body)
	if p != nil {
		return p
	}
	rec, err := ops.SetRecipients(c.r.Context(), rec.ID, rcpts)
	if err != nil {
		return s.refusal(c, "replacing a token's recipients", err)
	}
	s.log.Info("API: token recipients replaced", "api_key", c.key.Name, "token_id", rec.ID, "list", rec.List,
		"recipients", len(rec.Recipients), "client", c.client)
	return writeJSON(c.w, http.StatusOK, s.tokenJSON(rec, true))
}

func (s *Server) listTokens(c *call) *Problem {
	ops := s.ops()
	list, p := s.list(c, ops)
	if p != nil {
		return p
	}
	q := c.r.URL.Query()
	tq := tokenops.Query{List: list, Owner: q.Get("owner"), State: store.TokenState(q.Get("state")), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return invalid("limit", "must be from 1 to "+strconv.Itoa(tokenops.MaxPageSize))
		}
		tq.Limit = n
	}
	page, err := ops.Tokens(c.r.Context(), tq)
	if err != nil {
		return s.refusal(c, "listing tokens", err)
	}
	out := tokenListJSON{Entries: make([]tokenJSON, 0, len(page.Tokens)), Total: page.Total, Counts: countsJSON(page.Counts)}
	for _, r := range page.Tokens {
		out.Entries = append(out.Entries, s.tokenJSON(r, false))
	}
	if page.Next != "" {
		next := page.Next
		out.NextCursor = &next
		v := url.Values{}
		for _, k := range []string{"owner", "state", "limit"} {
			if q.Get(k) != "" {
				v.Set(k, q.Get(k))
			}
		}
		v.Set("cursor", next)
		out.Links.Next = Base + "/lists/" + url.PathEscape(list) + "/tokens?" + v.Encode()
	}
	return writeJSON(c.w, http.StatusOK, out)
}

func (s *Server) lists(c *call) *Problem {
	ls, err := s.ops().Lists(c.r.Context(), c.covers)
	if err != nil {
		return s.tempfail(c, "summarising lists", err)
	}
	out := listsJSON{Entries: make([]listJSON, 0, len(ls))}
	for _, l := range ls {
		out.Entries = append(out.Entries, listJSON{
			Address: l.Address, Name: l.Name, DefaultRecipients: l.DefaultRecipients, HideSender: l.HideSender,
			Tokens: countsJSON(l.Tokens), DeliveriesPending: l.PendingDeliveries,
			Links: listLinks{Tokens: Base + "/lists/" + url.PathEscape(l.Address) + "/tokens"},
		})
	}
	return writeJSON(c.w, http.StatusOK, out)
}

func (s *Server) deliveries(c *call) *Problem {
	ops := s.ops()
	rec, p := s.token(c, ops)
	if p != nil {
		return p
	}
	ds, err := ops.Deliveries(c.r.Context(), rec.ID, maxDeliveryRecipients)
	if err != nil {
		return s.refusal(c, "reading deliveries", err)
	}
	out := deliveriesJSON{Entries: make([]deliveryJSON, 0, len(ds))}
	for _, d := range ds {
		out.Entries = append(out.Entries, toDeliveryJSON(d))
	}
	return writeJSON(c.w, http.StatusOK, out)
}

// displayList is the canonical form of a list key, for the JSON.
func displayList(key string) string {
	if a, err := address.Parse(key); err == nil {
		return a.String()
	}
	return key
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
