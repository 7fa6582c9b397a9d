package api

import (
	"net/url"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
	"github.com/restrictedmail/restrictedmail/tokenops"
)

// The JSON of the resources, as openapi.yaml describes them.

type tokenLinks struct {
	Self       string `json:"self"`
	Deliveries string `json:"deliveries"`
	List       string `json:"list"`
}

type tokenJSON struct {
	ID              string     `json:"id"`
	List            string     `json:"list"`
	Sender          *string    `json:"sender"`
	State           string     `json:"state"`
	CreatedAt       time.Time  `json:"created_at"`
	ExpiresAt       *time.Time `json:"expires_at"`
	UsesAllowed     int        `json:"uses_allowed"`
	UsesSpent       int        `json:"uses_spent"`
	UsesLeft        int        `json:"uses_left"`
	HideSender      bool       `json:"hide_sender"`
	RecipientsFrom  string     `json:"recipients_from"` // "token" or "list"
	RecipientsCount int        `json:"recipients_count"`
	Recipients      []string   `json:"recipients,omitempty"`
	Owner           string     `json:"owner"`
	ExternalRef     string     `json:"external_ref"`
	Report          string     `json:"report,omitempty"`
	Links           tokenLinks `json:"links"`
}

// issuedJSON is a token with its secret: the answer to an issue or a
// re-key, and only to those.
type issuedJSON struct {
	tokenJSON
	Token         string `json:"token"`
	TokenFile     string `json:"token_file"`
	TokenFileName string `json:"token_file_name"`
}

type stateCountsJSON struct {
	Active  int64 `json:"active"`
	Used    int64 `json:"used"`
	Expired int64 `json:"expired"`
	Revoked int64 `json:"revoked"`
	Total   int64 `json:"total"`
}

func countsJSON(c store.StateCounts) stateCountsJSON {
	return stateCountsJSON{Active: c.Active, Used: c.Used, Expired: c.Expired, Revoked: c.Revoked, Total: c.Total()}
}

type pageLinks struct {
	Next string `json:"next,omitempty"`
}

type tokenListJSON struct {
	Entries    []tokenJSON     `json:"entries"`
	Total      int64           `json:"total"`
	Counts     stateCountsJSON `json:"counts"`
	NextCursor *string         `json:"next_cursor"`
	Links      pageLinks       `json:"links"`
}

type listLinks struct {
	Tokens string `json:"tokens"`
}

type listJSON struct {
	Address           string          `json:"address"`
	Name              string          `json:"name"`
	DefaultRecipients int             `json:"default_recipients"`
	HideSender        bool            `json:"hide_sender"`
	Tokens            stateCountsJSON `json:"tokens"`
	DeliveriesPending int64           `json:"deliveries_pending"`
	Links             listLinks       `json:"links"`
}

type listsJSON struct {
	Entries []listJSON `json:"entries"`
}

type recipientJSON struct {
	Address string `json:"address"`
	State   string `json:"state"`
	Reply   string `json:"reply,omitempty"`
	// BounceStatus and BounceDiagnostic come from the delivery report of a
	// bounced or delayed recipient.
	BounceStatus     string     `json:"bounce_status,omitempty"`
	BounceDiagnostic string     `json:"bounce_diagnostic,omitempty"`
	UpdatedAt        *time.Time `json:"updated_at"`
}

type deliveryCountsJSON struct {
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	Pending   int `json:"pending"`
	Bounced   int `json:"bounced"`
	Delayed   int `json:"delayed"`
}

type deliveryJSON struct {
	ID                  string             `json:"id"`
	List                string             `json:"list"`
	Sender              string             `json:"sender"`
	State               string             `json:"state"` // "pending" or "completed"
	CreatedAt           time.Time          `json:"created_at"`
	CompletedAt         *time.Time         `json:"completed_at"`
	Counts              deliveryCountsJSON `json:"counts"`
	Recipients          []recipientJSON    `json:"recipients"`
	RecipientsTruncated bool               `json:"recipients_truncated"`
}

type deliveriesJSON struct {
	Entries []deliveryJSON `json:"entries"`
}

func (s *Server) tokenJSON(r token.Record, withRecipients bool) tokenJSON {
	list := displayList(r.List)
	t := tokenJSON{
		ID: r.ID, List: list, State: string(store.StateOf(r, s.opts.Now())), CreatedAt: r.Created.UTC(),
		ExpiresAt: timePtr(r.Expires), UsesAllowed: r.UsesAllowed, UsesSpent: r.UsesSpent, UsesLeft: r.UsesLeft(),
		HideSender: r.HideSender, RecipientsFrom: "list", RecipientsCount: len(r.Recipients),
		Owner: r.Owner, ExternalRef: r.ExternalRef, Report: r.Report,
		Links: tokenLinks{
			Self:       Base + "/tokens/" + r.ID,
			Deliveries: Base + "/tokens/" + r.ID + "/deliveries",
			List:       Base + "/lists/" + url.PathEscape(list) + "/tokens",
		},
	}
	if r.Sender != "" {
		sender := r.Sender
		t.Sender = &sender
	}
	if len(r.Recipients) > 0 {
		t.RecipientsFrom = "token"
		if withRecipients {
			t.Recipients = r.Recipients
		}
	} else if l, err := tokenops.New(s.opts.Store, s.opts.Settings()).List(r.List); err == nil {
		t.RecipientsCount = len(l.Members)
	}
	return t
}

// tokenFileName is what a portal offers the token file as.
const tokenFileName = "token.txt"

func (s *Server) issuedJSON(iss tokenops.Issued) issuedJSON {
	return issuedJSON{tokenJSON: s.tokenJSON(iss.Record, true), Token: iss.Token, TokenFile: string(iss.File), TokenFileName: tokenFileName}
}

func toDeliveryJSON(d store.DeliveryDetail) deliveryJSON {
	out := deliveryJSON{
		ID: d.ID, List: displayList(d.List), Sender: d.Sender, State: "pending", CreatedAt: d.Created.UTC(),
		CompletedAt: timePtr(d.Completed),
		Counts: deliveryCountsJSON{Delivered: d.Counts.Delivered, Failed: d.Counts.Failed, Pending: d.Counts.Pending,
			Bounced: d.Counts.Bounced, Delayed: d.Counts.Delayed},
		Recipients: make([]recipientJSON, 0, len(d.Recipients)), RecipientsTruncated: d.Truncated,
	}
	if !d.Completed.IsZero() {
		out.State = "completed"
	}
	for _, r := range d.Recipients {
		rj := recipientJSON{Address: r.Rcpt, State: r.State.String(), UpdatedAt: timePtr(r.Updated)}
		switch r.State {
		case store.Failed:
			rj.Reply = r.Detail
		case store.Bounced, store.Delayed:
			rj.BounceStatus, rj.BounceDiagnostic = r.BounceStatus, r.BounceDetail
		}
		out.Recipients = append(out.Recipients, rj)
	}
	return out
}
