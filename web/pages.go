package web

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// listRow is one list on the overview.
type listRow struct {
	tokenops.ListInfo
	Failed int64 // recipients failed in the last failedSince
}

// Attention: the list has something to look at.
func (l listRow) Attention() bool { return l.Failed > 0 || l.PendingDeliveries > 0 }

type overviewData struct{ Lists []listRow }

func (overviewData) title() string { return "overview.title" }

// overview shows the person's lists, those needing attention first.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	ops := s.ops(set)
	infos, err := ops.Lists(r.Context(), p.may)
	if err != nil {
		s.internalError(w, r, p, "reading the lists", err)
		return
	}
	since := s.opts.Now().Add(-failedSince)
	failed, err := s.opts.Store.FailedRecipients(r.Context(), since)
	if err != nil {
		s.internalError(w, r, p, "reading the lists", err)
		return
	}
	rows := make([]listRow, 0, len(infos))
	for _, in := range infos {
		rows = append(rows, listRow{ListInfo: in, Failed: failed[in.Key]})
	}
	slices.SortStableFunc(rows, func(a, b listRow) int {
		return cmp.Or(cmp.Compare(b.Failed, a.Failed), cmp.Compare(b.PendingDeliveries, a.PendingDeliveries))
	})
	s.render(w, r, http.StatusOK, "overview", p, overviewData{Lists: rows})
}

// tokenRow is a token as the pages show it.
type tokenRow struct {
	token.Record
	State store.TokenState
}

// Expiry is the expiry for the page ("" for never).
func (t tokenRow) Expiry() string { return when(t.Expires) }

// CreatedAt is the creation time for the page.
func (t tokenRow) CreatedAt() string { return when(t.Created) }

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

type listData struct {
	List   tokenops.ListInfo
	Tokens []tokenRow
	Counts store.StateCounts
	State  string // the filter in force
	Next   string // cursor of the next page
	Notice string // catalog key
}

func (listData) title() string { return "list.title" }

// list returns the list in the path when p may see it (else nil, having
// answered 404).
func (s *Server) list(w http.ResponseWriter, r *http.Request, p *person, set Settings) *tokenops.ListInfo {
	a, err := address.Parse(r.PathValue("list"))
	if err == nil && p.may(a.Key()) {
		infos, err := s.ops(set).Lists(r.Context(), func(k string) bool { return k == a.Key() })
		if err != nil {
			s.internalError(w, r, p, "reading a list", err)
			return nil
		}
		if len(infos) == 1 {
			return &infos[0]
		}
	}
	s.notFound(w, r, p)
	return nil
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, p *person) {
	s.render(w, r, http.StatusNotFound, "message", p, message{Title: "notfound.title", Text: "notfound.text", Link: "/", LinkT: "nav.overview"})
}

// listTokens shows the tokens of a list, newest first, a page at a time.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	l := s.list(w, r, p, set)
	if l == nil {
		return
	}
	q := r.URL.Query()
	state := store.TokenState(q.Get("state"))
	page, err := s.ops(set).Tokens(r.Context(), tokenops.Query{List: l.Address, State: state, Cursor: q.Get("after")})
	var fe *tokenops.FieldError
	if errors.As(err, &fe) {
		state, page.TokenPage, page.Next = "", store.TokenPage{}, ""
		page, err = s.ops(set).Tokens(r.Context(), tokenops.Query{List: l.Address})
	}
	if err != nil {
		s.internalError(w, r, p, "listing tokens", err)
		return
	}
	data := listData{List: *l, Counts: page.Counts, State: string(state), Next: page.Next}
	for _, t := range page.Tokens {
		data.Tokens = append(data.Tokens, tokenRow{Record: t, State: store.StateOf(t, s.opts.Now())})
	}
	s.render(w, r, http.StatusOK, "list", p, data)
}

// token returns the token in the path when p may see its list (else
// nil, having answered 404: a token of another list does not exist for p).
func (s *Server) token(w http.ResponseWriter, r *http.Request, p *person, set Settings) (*tokenRow, *tokenops.ListInfo) {
	rec, err := s.ops(set).Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, token.ErrNotFound):
	case err != nil:
		s.internalError(w, r, p, "reading a token", err)
		return nil, nil
	default:
		a, err := address.Parse(rec.List)
		if err == nil && p.may(a.Key()) {
			infos, err := s.ops(set).Lists(r.Context(), func(k string) bool { return k == a.Key() })
			if err != nil {
				s.internalError(w, r, p, "reading a list", err)
				return nil, nil
			}
			if len(infos) == 1 {
				return &tokenRow{Record: rec, State: store.StateOf(rec, s.opts.Now())}, &infos[0]
			}
		}
	}
	s.notFound(w, r, p)
	return nil, nil
}

// rcptRow is one recipient of a delivery.
type rcptRow struct {
	store.RecipientState
}

// StateKey is the catalog key of the recipient's state; a state this
// page does not know (added later) shows as its number.
func (r rcptRow) StateKey() string {
	switch r.State {
	case store.Pending:
		return "rcpt.pending"
	case store.Delivered:
		return "rcpt.delivered"
	case store.Failed:
		return "rcpt.failed"
	case store.Bounced:
		return "rcpt.bounced"
	case store.Delayed:
		return "rcpt.delayed"
	}
	return "rcpt.other"
}

// Class is the CSS class of the state.
func (r rcptRow) Class() string {
	switch r.State {
	case store.Delivered:
		return "ok"
	case store.Failed, store.Bounced:
		return "bad"
	}
	return "wait"
}

// Reported: the receiving side's report (a bounce or a delay) is what
// the page shows of the recipient, rather than the relay's reply.
func (r rcptRow) Reported() bool {
	return (r.State == store.Bounced || r.State == store.Delayed) && (r.BounceStatus != "" || r.BounceDetail != "")
}

// UpdatedAt is when the recipient's state was last set.
func (r rcptRow) UpdatedAt() string { return when(r.Updated) }

type deliveryRow struct {
	store.DeliveryDetail
	Rcpts []rcptRow
}

// Reported: the receiving side reported on some recipients (bounced or
// delayed), so the page counts them apart rather than as the journal's
// failed and delivered, which include them.
func (d deliveryRow) Reported() bool { return d.Counts.Bounced > 0 || d.Counts.Delayed > 0 }

// OnlyDelivered and RelayFailed are the journal's delivered without the
// delayed and failed without the bounced, as the rows show them.
func (d deliveryRow) OnlyDelivered() int { return d.Counts.Delivered - d.Counts.Delayed }

// RelayFailed: see OnlyDelivered.
func (d deliveryRow) RelayFailed() int { return d.Counts.Failed - d.Counts.Bounced }

// CreatedAt and CompletedAt are for the page.
func (d deliveryRow) CreatedAt() string   { return when(d.Created) }
func (d deliveryRow) CompletedAt() string { return when(d.Completed) }

type tokenData struct {
	List       tokenops.ListInfo
	Token      tokenRow
	Deliveries []deliveryRow
	Notice     string
	// Report is the catalog key of the token's own report setting, ""
	// when it takes the list's (ListReport).
	Report, ListReport string
}

func (tokenData) title() string { return "token.title" }

// tokenPage shows a token and what happened to each copy it sent.
func (s *Server) tokenPage(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	t, l := s.token(w, r, p, set)
	if t == nil {
		return
	}
	dds, err := s.ops(set).Deliveries(r.Context(), t.ID, maxShownRecipients)
	if err != nil {
		s.internalError(w, r, p, "reading deliveries", err)
		return
	}
	data := tokenData{List: *l, Token: *t, Report: reportKey(t.Report), ListReport: listReportKey(set, *l)}
	if r.URL.Query().Get("done") == "revoked" {
		data.Notice = "token.revoked"
	}
	for _, dd := range dds {
		row := deliveryRow{DeliveryDetail: dd}
		for _, rs := range dd.Recipients {
			row.Rcpts = append(row.Rcpts, rcptRow{rs})
		}
		data.Deliveries = append(data.Deliveries, row)
	}
	s.render(w, r, http.StatusOK, "token", p, data)
}

type confirmData struct {
	List   tokenops.ListInfo
	Token  tokenRow
	Action string // "revoke" or "rekey"
}

func (c confirmData) title() string { return c.TitleKey() }

func (s *Server) revokeForm(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	if t, l := s.token(w, r, p, set); t != nil {
		s.render(w, r, http.StatusOK, "confirm", p, confirmData{List: *l, Token: *t, Action: "revoke"})
	}
}

// revoke revokes a token (after the confirmation page's POST).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	t, _ := s.token(w, r, p, set)
	if t == nil {
		return
	}
	if _, err := s.ops(set).Revoke(r.Context(), t.ID); err != nil {
		s.internalError(w, r, p, "revoking a token", err)
		return
	}
	s.log.Info("token revoked", "token_id", t.ID, "list", t.List, "by", p.Email.String())
	http.Redirect(w, r, "/tokens/"+t.ID+"?done=revoked", http.StatusSeeOther)
}

func (s *Server) rekeyForm(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	if t, l := s.token(w, r, p, set); t != nil {
		s.render(w, r, http.StatusOK, "confirm", p, confirmData{List: *l, Token: *t, Action: "rekey"})
	}
}

// rekey gives a token a new secret and shows it, once, as issuing does.
func (s *Server) rekey(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	t, l := s.token(w, r, p, set)
	if t == nil {
		return
	}
	is, err := s.ops(set).Rekey(r.Context(), t.ID)
	if errors.Is(err, token.ErrRevoked) || errors.Is(err, token.ErrExpired) || errors.Is(err, token.ErrUsedUp) {
		s.render(w, r, http.StatusConflict, "message", p, message{Title: "rekey.title", Text: "rekey.unusable", Link: "/tokens/" + t.ID, LinkT: "nav.back"})
		return
	}
	if err != nil {
		s.internalError(w, r, p, "re-keying a token", err)
		return
	}
	s.log.Info("token re-keyed", "token_id", t.ID, "list", t.List, "by", p.Email.String())
	s.renderIssued(w, r, p, set, *l, is, true)
}

// tokenFile answers the token file for download. The secret comes back
// from the page that showed it (the store has only its hash) and must be
// the token's.
func (s *Server) tokenFile(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	t, _ := s.token(w, r, p, set)
	if t == nil {
		return
	}
	secret := r.PostForm.Get("token")
	if len(secret) > 256 || !token.HashOf(secret).Equal(t.Hash) {
		s.render(w, r, http.StatusBadRequest, "message", p, message{Title: "file.title", Text: "file.stale", Link: "/tokens/" + t.ID + "/rekey", LinkT: "token.rekey"})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=us-ascii")
	w.Header().Set("Content-Disposition", `attachment; filename="token-`+t.ID+`.txt"`)
	_, _ = w.Write(token.FileContent(set.Tokens.Rules.Finder.Prefix, secret))
}

// StateKey is the catalog key of the token's state.
func (t tokenRow) StateKey() string {
	switch t.State {
	case store.StateActive:
		return "state.active"
	case store.StateUsed:
		return "state.used"
	case store.StateExpired:
		return "state.expired"
	case store.StateRevoked:
		return "state.revoked"
	}
	return "state.all"
}

// Active: the token can still be used (and re-keyed).
func (t tokenRow) Active() bool { return t.State == store.StateActive }

// Other: a recipient state this page has no words for.
func (r rcptRow) Other() bool { return r.StateKey() == "rcpt.other" }

// Number is the state's number in the journal, what "other" shows.
func (r rcptRow) Number() int { return int(r.State) }

// TitleKey, QuestionKey and ButtonKey are the confirmation's words.
func (c confirmData) TitleKey() string {
	if c.Action == "revoke" {
		return "revoke.title"
	}
	return "rekey.title"
}

// QuestionKey: see TitleKey.
func (c confirmData) QuestionKey() string {
	if c.Action == "revoke" {
		return "revoke.question"
	}
	return "rekey.question"
}

// ButtonKey: see TitleKey.
func (c confirmData) ButtonKey() string {
	if c.Action == "revoke" {
		return "revoke.button"
	}
	return "rekey.button"
}
