package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/internal/postfixtest"
	"github.com/restrictedmail/restrictedmail/token"
)

// The SMTP-time promise against an attacker who knows Postfix: every
// spelling under which Postfix delivers to a restricted address — quotes,
// source routes, an extension that is no RFC 5322 local part, the percent
// hack and bang paths at Postfix's own domain, an unqualified address
// completed with myorigin, case folded as Postfix's tables fold it (with
// SMTPUTF8 too) — is refused while the sender is connected when it carries
// no token: nothing is queued, and no bounce goes to the (forged) sender.

// spellings are the classes, two or more examples each.
var spellings = map[string][]string{
	"quoted local part": {`"board"@example.org`, `"Bo\ard"@EXAMPLE.org`, `"board+x"@example.org`},
	"source route":      {"@relay.test:board@example.org", "@a.test,@b.test:BOARD@example.org"},
	"extension no atom": {"board+x.@example.org", "board+a..b@example.org", "board+@example.org"},
	"percent hack":      {"board%example.org@mx.example.org", "BOARD%Example.org@MX.example.org"},
	"bang path":         {"example.org!board@mx.example.org", "EXAMPLE.ORG!Board@mx.example.org"},
	"unqualified":       {"board", "BOARD+x"},
	"case folding":      {"BOARD@EXAMPLE.ORG", "Events@Example.Org"},
	"SMTPUTF8 folding":  {"ſtyret@example.org", "\u212Aontor@example.org", "STYRET+ſ@example.org"},
	// Routed to the endpoint by transport_maps, but no list: the endpoint
	// would refuse it after the queue.
	"stale route": {"stale@example.org", "Stale+x@example.org"},
}

// spellingWorld is a Postfix whose own domain (mydestination) is
// mx.example.org, whose myorigin is example.org, with styret@ and kontor@
// as lists too, and mopts on top.
func spellingWorld(t *testing.T, mopts map[string]string, bracket bool) *world {
	main := map[string]string{
		"mydestination":        "mx.example.org",
		"myorigin":             "example.org",
		"local_recipient_maps": "",
		"smtputf8_enable":      "yes",
	}
	for k, v := range mopts {
		main[k] = v
	}
	return newWorld(t, worldOpts{milter: true, mainCF: main, lists: []string{"styret@example.org", "kontor@example.org"},
		routes: []string{"stale@example.org"}, bracketTransport: bracket})
}

func TestSpellingsAreRefusedAtSMTPTime(t *testing.T) {
	t.Parallel()
	for _, variant := range []struct {
		name, id string
		main     map[string]string
		bracket  bool
	}{
		{"milter protocol 6", "protocol-6", nil, false},
		{"milter_protocol = 2, transport lmtp:[host]:port", "protocol-2", map[string]string{"milter_protocol": "2"}, true},
	} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			w := spellingWorld(t, variant.main, variant.bracket)
			n := 0
			for class, rcpts := range spellings {
				for _, rcpt := range rcpts {
					n++
					r := rawSMTP(t, w.pf.SMTPAddr(), author, rcpt, fmt.Sprintf("Subject: spelling %d\r\nMessage-ID: <spelling-%d@example.net>\r\n\r\nNo token.\r\n", n, n))
					t.Logf("%s %q: %s", class, rcpt, lastLines(r.transcript, 4))
					if r.queued {
						t.Errorf("%s %q: queued (%s), want refused at SMTP time", class, rcpt, r.transcript)
					} else if !r.refused5xx {
						t.Errorf("%s %q: not refused with 5xx: %s", class, rcpt, r.transcript)
					}
				}
			}
			w.pf.Flush(t)
			if q := w.pf.Queue(t); len(q) != 0 {
				t.Errorf("queued after the spellings:\n%s", postfixtest.FormatQueue(q))
			}
			if ms := w.sink.Messages(); len(ms) != 0 {
				t.Errorf("%d messages (bounces) went out through Postfix's relayhost", len(ms))
			}
			if ms := w.relay.Messages(); len(ms) != 0 {
				t.Errorf("%d copies were distributed", len(ms))
			}
			// lost: queued and bounced (a DSN to the forged sender) counts
			// as what the promise loses.
			t.Logf("RELIABILITY scenario=spellings-without-token-%s messages=%d lost=%d duplicated=0 leaked=0 panics=%d",
				variant.id, n, len(w.sink.Messages()), strings.Count(w.rm.log.String(), "panic"))
		})
	}
}

// TestSpellingsWithATokenAreDelivered: the same spellings with a valid
// subaddress token are delivered, once, to the list — the milter matched
// what Postfix delivers and the endpoint matches it the same way.
func TestSpellingsWithATokenAreDelivered(t *testing.T) {
	t.Parallel()
	w := spellingWorld(t, nil, true)
	for i, rcpt := range []string{
		`"board+%s"@example.org`, "@relay.test:board+%s@example.org", "board+%s%%example.org@mx.example.org",
		"example.org!board+%s@mx.example.org", "BOARD+%s", "ſtyret+%s@example.org",
	} {
		tok := token.Generate()
		w.issue(tok, func(r *token.Record) {
			if strings.Contains(rcpt, "tyret") {
				r.List = "styret@example.org"
			}
		})
		r := rawSMTP(t, w.pf.SMTPAddr(), author, fmt.Sprintf(rcpt, tok), fmt.Sprintf("Subject: with token %d\r\nMessage-ID: <spelling-tok-%d@example.net>\r\n\r\nHello.\r\n", i, i))
		if !r.queued {
			t.Errorf("%q with a valid token: %s", rcpt, r.transcript)
		}
	}
	w.pf.Flush(t)
	w.pf.WaitQueueEmpty(t, 30*time.Second)
	if ms := w.sink.Messages(); len(ms) != 0 {
		t.Errorf("%d bounces", len(ms))
	}
}

// smtpResult is what a raw SMTP transaction came to.
type smtpResult struct {
	queued     bool
	refused5xx bool
	transcript string
}

// rawSMTP runs one transaction by hand, so that the envelope is sent
// exactly as written (quotes, source routes, unqualified, UTF-8 with
// SMTPUTF8) — Go's SMTP clients would check or rewrite it.
func rawSMTP(t *testing.T, addr, from, rcpt, msg string) smtpResult {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	var tr strings.Builder
	read := func() (int, string) {
		var code int
		var last string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				tr.WriteString("<read error " + err.Error() + ">")
				return 0, ""
			}
			tr.WriteString("S: " + line)
			last = line
			fmt.Sscanf(line, "%d", &code)
			if len(line) < 4 || line[3] != '-' {
				return code, last
			}
		}
	}
	send := func(l string) (int, string) {
		tr.WriteString("C: " + l + "\r\n")
		fmt.Fprintf(conn, "%s\r\n", l)
		return read()
	}
	read()
	send("EHLO client.example.net")
	utf8 := ""
	for _, r := range rcpt + from {
		if r > 127 {
			utf8 = " SMTPUTF8"
			break
		}
	}
	res := smtpResult{}
	if code, _ := send("MAIL FROM:<" + from + ">" + utf8); code != 250 {
		res.transcript = tr.String()
		return res
	}
	code, _ := send("RCPT TO:<" + rcpt + ">")
	if code >= 500 {
		res.refused5xx = true
		send("QUIT")
		res.transcript = tr.String()
		return res
	}
	if code, _ := send("DATA"); code != 354 {
		res.refused5xx = code >= 500
		res.transcript = tr.String()
		return res
	}
	code, last := send("From: Alice <" + from + ">\r\nTo: " + rcpt + "\r\n" + msg + ".")
	res.queued = code == 250 && strings.Contains(last, "queued as")
	res.refused5xx = code >= 500
	send("QUIT")
	res.transcript = tr.String()
	return res
}

// lastLines are the last n lines of a transcript, for the log.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
