package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// issueForm is the issue form's fields as typed, with their errors
// (catalog keys).
type issueForm struct {
	Sender     string
	TTL        string
	Uses       string
	Mode       string // "list": the list's recipients; "pasted": Recipients
	Recipients string
	HideSender bool
	Report     string // "": the list's; else one of the report modes

	Errors     map[string]string // field → catalog key
	LineErrors []lineError       // recipients, line by line
	Detail     string            // tokenops' words for a refusal it alone knows
}

type lineError struct {
	Line int
	Text string
	Key  string
}

type issueData struct {
	List tokenops.ListInfo
	Form issueForm
	// DefaultTTL and DefaultUses are the configuration's, as hints.
	DefaultTTL  string
	DefaultUses int
	// ListReport is the catalog key of the list's report setting, which
	// the token takes unless the form chooses another.
	ListReport string
}

func (issueData) title() string { return "issue.title" }

// The form's bounds beyond tokenops': a lifetime and a number of uses
// a person would type.
const (
	maxUses     = 1000
	maxTTL      = 366 * 24 * time.Hour
	maxLineSize = 1000
)

func (s *Server) issueDefaults(set Settings, l tokenops.ListInfo) issueData {
	d := issueData{List: l, DefaultTTL: ttlText(set.Tokens.Rules.Issue.TTL), DefaultUses: set.Tokens.Rules.Issue.Uses,
		ListReport: listReportKey(set, l)}
	d.Form = issueForm{TTL: d.DefaultTTL, Uses: strconv.Itoa(max(d.DefaultUses, 1)), Mode: "list", HideSender: l.HideSender}
	if l.DefaultRecipients == 0 {
		d.Form.Mode = "pasted"
	}
	return d
}

// ttlText writes a lifetime as a person would type it.
func ttlText(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return d.String()
}

func (s *Server) issueForm(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	l := s.list(w, r, p, set)
	if l == nil {
		return
	}
	s.render(w, r, http.StatusOK, "issue", p, s.issueDefaults(set, *l))
}

// issue reads the form, checks every field (each recipient line on its
// own), and issues the token; the page after it shows the secret, once.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, p *person, set Settings) {
	l := s.list(w, r, p, set)
	if l == nil {
		return
	}
	data := s.issueDefaults(set, *l)
	f := &data.Form
	pf := r.PostForm
	f.Sender = trimForm(strings.TrimSpace(pf.Get("sender")), 300)
	f.TTL = trimForm(strings.TrimSpace(pf.Get("ttl")), 40)
	f.Uses = trimForm(strings.TrimSpace(pf.Get("uses")), 40)
	f.Mode = pf.Get("recipients_mode")
	f.Recipients = pf.Get("recipients")
	f.HideSender = pf.Get("hide_sender") == "1"
	f.Report = trimForm(pf.Get("report"), 20)
	f.Errors = map[string]string{}
	req := tokenops.IssueRequest{List: l.Address, HideSender: f.HideSender, Owner: p.Email.String()}
	if f.Report != "" && reportKey(f.Report) == "" {
		f.Errors["report"] = "issue.err.report"
	} else {
		req.Report = f.Report
	}
	if f.Sender != "" {
		if a, err := address.Parse(f.Sender); err != nil {
			f.Errors["sender"] = "issue.err.sender"
		} else {
			req.Sender = a.String()
		}
	}
	if f.TTL != "" {
		ttl, err := tokenops.ParseTTL(f.TTL)
		switch {
		case err != nil:
			f.Errors["ttl"] = "issue.err.ttl"
		case ttl > maxTTL:
			f.Errors["ttl"] = "issue.err.ttllong"
		default:
			req.TTL = &ttl
		}
	}
	if f.Uses != "" {
		n, err := strconv.Atoi(f.Uses)
		if err != nil || n < 1 || n > maxUses {
			f.Errors["uses"] = "issue.err.uses"
		} else {
			req.Uses = n
		}
	}
	switch f.Mode {
	case "list":
		switch {
		case l.DefaultRecipients == 0:
			f.Errors["recipients"] = "issue.err.nolist"
		case strings.TrimSpace(f.Recipients) != "":
			f.Errors["recipients"] = "issue.err.both"
		}
	case "pasted":
		req.Recipients = s.pastedRecipients(f, set)
	default:
		f.Mode = "pasted"
		f.Errors["recipients"] = "issue.err.mode"
	}
	if len(f.Recipients) > 200_000 {
		f.Recipients = "" // not echoed back: the form would be as large
	}
	if len(f.Errors) > 0 || len(f.LineErrors) > 0 {
		s.render(w, r, http.StatusUnprocessableEntity, "issue", p, data)
		return
	}
	is, err := s.ops(set).Issue(r.Context(), req)
	var fe *tokenops.FieldError
	if errors.As(err, &fe) {
		f.Errors[formField(fe.Field)] = "issue.err.refused"
		f.Detail = fe.Msg
		s.render(w, r, http.StatusUnprocessableEntity, "issue", p, data)
		return
	}
	if err != nil {
		s.internalError(w, r, p, "issuing a token", err)
		return
	}
	s.log.Info("token issued", "token_id", is.Record.ID, "list", l.Address, "by", p.Email.String())
	s.renderIssued(w, r, p, set, *l, is, false)
}

// pastedRecipients reads the pasted addresses, one per line (commas and
// semicolons also separate), recording each bad line.
func (s *Server) pastedRecipients(f *issueForm, set Settings) []string {
	limit := set.Tokens.MaxRecipients
	if limit <= 0 {
		limit = tokenops.DefaultMaxRecipients
	}
	var out []string
	seen := map[string]bool{}
	for i, line := range strings.Split(f.Recipients, "\n") {
		for _, item := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ';' }) {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if len(f.LineErrors) >= 50 {
				return nil // enough to fix first
			}
			a, err := address.Parse(item)
			switch {
			case len(item) > maxLineSize || err != nil:
				f.LineErrors = append(f.LineErrors, lineError{Line: i + 1, Text: trimForm(item, 80), Key: "issue.err.line"})
			case seen[a.Key()]:
			default:
				seen[a.Key()] = true
				out = append(out, a.String())
			}
			if len(out) > limit {
				f.Errors["recipients"] = "issue.err.toomany"
				return nil
			}
		}
	}
	if len(out) == 0 && len(f.LineErrors) == 0 {
		f.Errors["recipients"] = "issue.err.none"
	}
	return out
}

// formField is the form's field for a tokenops field.
func formField(f string) string {
	switch f {
	case "sender", "ttl", "uses", "recipients", "report":
		return f
	}
	return "form"
}

// reportKey is the catalog key of a report mode; "" for what is none of
// them.
func reportKey(mode string) string {
	switch mode {
	case store.ReportNone:
		return "report.none"
	case store.ReportSummary:
		return "report.summary"
	case store.ReportFailures:
		return "report.failures"
	}
	return ""
}

// listReportKey is the catalog key of l's report setting in force
// (unset is none, as policy.ReportOf has it).
func listReportKey(set Settings, l tokenops.ListInfo) string {
	if a, err := address.Parse(l.Address); err == nil {
		if pl := set.Tokens.Rules.List(a); pl != nil && reportKey(pl.Report) != "" {
			return reportKey(pl.Report)
		}
	}
	return "report.none"
}

type issuedData struct {
	List      tokenops.ListInfo
	ID        string
	Token     string
	File      string
	Header    string
	Subaddr   string // "" when the subaddress carrier is off
	Rekeyed   bool
	ExpiresAt string
	Uses      int
	Sender    string
}

func (issuedData) title() string { return "issued.title" }

// renderIssued shows a new secret: the only page that ever does.
func (s *Server) renderIssued(w http.ResponseWriter, r *http.Request, p *person, set Settings, l tokenops.ListInfo, is tokenops.Issued, rekeyed bool) {
	rules := set.Tokens.Rules
	d := issuedData{
		List: l, ID: is.Record.ID, Token: is.Token, File: strings.TrimRight(string(is.File), "\n"),
		Header: rules.Finder.Header + ": " + is.Token, Rekeyed: rekeyed,
		ExpiresAt: when(is.Record.Expires), Uses: is.Record.UsesAllowed, Sender: is.Record.Sender,
	}
	if rules.Delimiter != "" {
		if a, err := address.Parse(l.Address); err == nil {
			d.Subaddr = a.Local + rules.Delimiter[:1] + is.Token + "@" + a.Domain
		}
	}
	s.render(w, r, http.StatusOK, "issued", p, d)
}
