package tokenops

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

// LEGO's restricted mails are moved over with their tokens, so that the
// token files LEGO handed out keep working: each unspent one becomes a
// single-use token bound to its sender, stored — like every token — as a
// hash. The export is a CSV with the columns
//
//	id, sender, token, hide_sender, recipients
//
// (a header line naming them is optional); recipients are separated by
// spaces, commas or semicolons, and may be written as a PostgreSQL array
// ("{a@example.org,b@example.org}").

// ImportRequest is one import.
type ImportRequest struct {
	List string         // the restricted address the tokens are for (LEGO has one)
	TTL  *time.Duration // nil or 0: the tokens never expire (as in LEGO)
	CSV  io.Reader
}

// RowError is a line of the export that cannot be imported.
type RowError struct {
	Line int
	Msg  string
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ImportResult says what an import did.
type ImportResult struct {
	Imported []token.Record // in the order of the file
	Skipped  int            // tokens already in the store (an import run again)
}

// ImportErrors are the rows of an export that were refused; nothing was
// imported.
type ImportErrors []RowError

func (es ImportErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// maxImportRows bounds one file: LEGO holds a few hundred unspent mails.
const maxImportRows = 100_000

// ImportLEGO reads a LEGO export and stores its tokens. Every row is
// checked first; when any is wrong, nothing is stored and the error is
// ImportErrors naming each. A token already in the store is skipped, so
// an import can be run again.
func (o *Ops) ImportLEGO(ctx context.Context, req ImportRequest) (ImportResult, error) {
	l, err := o.List(req.List)
	if err != nil {
		return ImportResult{}, err
	}
	r := csv.NewReader(req.CSV)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var (
		recs []token.Record
		errs ImportErrors
		now  = o.now()
		seen = map[token.Hash]int{}
	)
	for line := 1; ; line++ {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ImportResult{}, fmt.Errorf("reading the export: %w", err)
		}
		if line == 1 && len(row) > 0 && strings.EqualFold(strings.TrimSpace(row[0]), "id") {
			continue // the header
		}
		if line > maxImportRows {
			return ImportResult{}, fmt.Errorf("reading the export: more than %d rows", maxImportRows)
		}
		rec, err := o.legoRow(l, row, req.TTL, now)
		if err != nil {
			errs = append(errs, RowError{Line: line, Msg: err.Error()})
			continue
		}
		if first, dup := seen[rec.Hash]; dup {
			errs = append(errs, RowError{Line: line, Msg: fmt.Sprintf("the same token as line %d", first)})
			continue
		}
		seen[rec.Hash] = line
		recs = append(recs, rec)
	}
	if len(errs) > 0 {
		return ImportResult{}, errs
	}
	var res ImportResult
	for _, rec := range recs {
		if _, err := o.st.TokenByHash(ctx, rec.Hash); err == nil {
			res.Skipped++
			continue
		} else if !errors.Is(err, token.ErrNotFound) {
			return res, err
		}
		if _, _, err := o.st.IssueToken(ctx, rec, nil, now); err != nil {
			return res, err
		}
		res.Imported = append(res.Imported, rec)
	}
	return res, nil
}

// legoRow turns one row into a token record, checked as `token issue`
// checks its flags.
func (o *Ops) legoRow(l *policy.List, row []string, ttl *time.Duration, now time.Time) (token.Record, error) {
	if len(row) != 5 {
		return token.Record{}, fmt.Errorf("%d columns; want 5: id, sender, token, hide_sender, recipients", len(row))
	}
	id, sender, tok, hide, rcpts := strings.TrimSpace(row[0]), strings.TrimSpace(row[1]), strings.TrimSpace(row[2]), row[3], row[4]
	if id == "" {
		return token.Record{}, errors.New("id is empty")
	}
	if !validLEGOToken(tok) {
		return token.Record{}, fmt.Errorf("token: want 1 to %d letters, digits, '-' or '_'", token.MaxLength)
	}
	hideSender, err := parseBool(hide)
	if err != nil {
		return token.Record{}, fmt.Errorf("hide_sender: %v", err)
	}
	if sender == "" {
		// LEGO binds every restricted mail to its sender; an empty one
		// would make the token valid for anybody.
		return token.Record{}, errors.New("sender is empty")
	}
	if ttl == nil {
		zero := time.Duration(0)
		ttl = &zero
	}
	req := IssueRequest{List: l.Addr.String(), Sender: sender, TTL: ttl, Uses: 1, Recipients: splitRecipients(rcpts),
		HideSender: hideSender, ExternalRef: "lego:" + id}
	if err := checkText("id", id); err != nil {
		return token.Record{}, err
	}
	if _, err := o.recipients(l, req.Recipients); err != nil {
		return token.Record{}, err
	}
	_, rec, err := policy.NewToken(o.set.Rules, policy.IssueRequest{
		List: req.List, Sender: req.Sender, TTL: req.TTL, Uses: 1, Recipients: req.Recipients, HideSender: req.HideSender,
	}, now)
	if err != nil {
		return token.Record{}, fromIssueError(err)
	}
	rec.Hash = token.HashOf(tok) // LEGO's token, not the one NewToken drew
	rec.ExternalRef = req.ExternalRef
	return rec, nil
}

func validLEGOToken(s string) bool {
	if s == "" || len(s) > token.MaxLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "t", "true", "1", "yes", "y":
		return true, nil
	case "f", "false", "0", "no", "n", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

func splitRecipients(s string) []string {
	s = strings.Trim(strings.TrimSpace(s), "{}")
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '"'
	})
}
