package milter

import (
	"context"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/store"
	"github.com/restrictedmail/restrictedmail/token"
)

// TestDuplicateThroughAnotherMX: a message whose token is used up, but
// for this very message (the journal holds its delivery by list, token
// and Message-ID — it came through another MX host first), is accepted:
// the LMTP endpoint answers it without sending. Another message with the
// same token, or the same one without its Message-ID, is refused as used.
func TestDuplicateThroughAnotherMX(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h2 := newHarness(t, func(o *Options) { o.Journal = o.Tokens.(*store.DB) })
	for _, tt := range []struct {
		name   string
		h      *harness
		mid    string
		accept bool
	}{
		{"the same message", h2, "<first@example.net>", true},
		{"another message", h2, "<second@example.net>", false},
		{"no Message-ID", h2, "", false},
		{"the same message, no journal", h, "<first@example.net>", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.h.addToken(t, nil)
			rec, err := tt.h.db.TokenByHash(context.Background(), token.HashOf(tok))
			if err != nil {
				t.Fatal(err)
			}
			d := store.Delivery{ID: token.NewID(), List: board, TokenID: rec.ID, Sender: "alice@example.net",
				Created: time.Now(), MessageID: "<first@example.net>"}
			if _, _, err := tt.h.db.BeginDelivery(context.Background(), d, []string{"m1@example.com"}); err != nil {
				t.Fatal(err)
			}
			headers := []field{{"From", "alice@example.net"}, {"To", board}, {"X-Restricted-Token", tok}}
			if tt.mid != "" {
				headers = append(headers, field{"Message-ID", tt.mid})
			}
			out := send(t, tt.h.session(t), testMessage{from: "alice@example.net", rcpts: []string{board}, headers: headers})
			if tt.accept {
				wantAccept(t, out, "eoh")
			} else {
				wantReject(t, out, "eoh", "Posting token already used")
			}
		})
	}
}
