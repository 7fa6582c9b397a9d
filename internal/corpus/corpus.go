// Package corpus is a collection of hostile and broken messages for
// restricted addresses, each with the verdict the milter and the LMTP
// endpoint must give it: missing and broken boundaries, deep nesting, huge
// header lines and header sections, NUL bytes, bare CR and LF, invalid
// base64 and quoted-printable, unknown charsets, 8-bit headers, UTF-8
// addresses, tokens where they do not count (a forwarded message, an HTML
// part, the text) and where they do (split across encoded lines, two of
// them: the first wins), truncated messages.
//
// The messages are files in testdata/, listed in testdata/MANIFEST with
// their expected verdicts; the very large ones are generated when asked
// for rather than committed. The tokens they carry are fixed (Records):
// a test issues them into its own store, so that a valid token is valid
// and an unknown one unknown.
package corpus

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"strings"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

//go:embed testdata/MANIFEST testdata/*.eml
var files embed.FS

// The tokens of the corpus. Valid may be used without limit; Unknown is
// never issued; the others are issued so that the policy refuses them for
// the reason their name says.
const (
	Valid   = "corpusvalid2token3aaaaaaaaaaaaaa"
	Unknown = "corpusunknown2token3bbbbbbbbbbbb"
	Expired = "corpusexpired2token3cccccccccccc"
	Used    = "corpusused2token3dddddddddddddddd"
	Revoked = "corpusrevoked2token3eeeeeeeeeeee"
	Bound   = "corpusbound2token3ffffffffffffff"  // bound to BoundSender
	Events  = "corpusevents2token3gggggggggggggg" // issued for EventsList

	// Prefix is the token-file prefix the messages use (tokens.prefix).
	Prefix = "RMTOKEN"
	// List is the restricted address the messages are for; EventsList
	// another one; Sender the envelope sender of every message.
	List        = "board@example.org"
	EventsList  = "events@example.org"
	Sender      = "alice@example.net"
	BoundSender = "bob@example.net"
)

// Secrets are every token of the corpus, the prefix, and the start of a
// token file in base64 (how mail clients attach it): none may appear in a
// redistributed copy or a log line.
func Secrets() []string {
	return []string{Valid, Unknown, Expired, Used, Revoked, Bound, Events, Prefix, PrefixBase64}
}

// PrefixBase64 is how a token file in base64 starts: "RMTOKE" encoded.
const PrefixBase64 = "Uk1UT0tF"

// Records are the token records a test adds to its store before running
// the corpus.
func Records(now time.Time) []token.Record {
	rec := func(tok, list string, mod func(*token.Record)) token.Record {
		r := token.Record{ID: token.NewID(), Hash: token.HashOf(tok), List: list, Created: now.UTC(), UsesAllowed: 1 << 30}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	return []token.Record{
		rec(Valid, List, nil),
		rec(Expired, List, func(r *token.Record) { r.Expires = now.Add(-time.Hour).UTC() }),
		rec(Used, List, func(r *token.Record) { r.UsesAllowed, r.UsesSpent = 1, 1 }),
		rec(Revoked, List, func(r *token.Record) { r.Revoked = true }),
		rec(Bound, List, func(r *token.Record) { r.Sender = BoundSender }),
		rec(Events, EventsList, nil),
	}
}

// Case is one message and its expected verdicts, by policy.Reason name
// ("pass", "no_token", "unknown_token", ...; "malformed" for a header the
// endpoint cannot read).
type Case struct {
	Name   string
	Milter string // the milter's verdict
	LMTP   string // the LMTP endpoint's verdict
	Rcpt   string // the envelope recipient
	About  string // what the case tests
}

// Generated reports whether the message is made at run time.
func (c Case) Generated() bool { return strings.HasPrefix(c.Name, "generated-") }

// Message returns the raw bytes of the case's message.
func (c Case) Message() ([]byte, error) {
	if gen := generator(c.Name); gen != nil {
		return gen(), nil
	}
	b, err := files.ReadFile("testdata/" + c.Name + ".eml")
	if err != nil {
		return nil, fmt.Errorf("corpus: message %s: %w", c.Name, err)
	}
	return b, nil
}

// Load reads the manifest. Every case has a message (a file or a
// generator) and every file a case.
func Load() ([]Case, error) {
	data, err := files.ReadFile("testdata/MANIFEST")
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	var cases []Case
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("corpus: MANIFEST line %d: want name, milter verdict, LMTP verdict, recipient and a description", n)
		}
		c := Case{Name: f[0], Milter: f[1], LMTP: f[2], Rcpt: f[3], About: strings.Join(f[4:], " ")}
		if c.Rcpt == "-" {
			c.Rcpt = List
		}
		c.Rcpt = strings.ReplaceAll(c.Rcpt, "VALID", Valid)
		if seen[c.Name] {
			return nil, fmt.Errorf("corpus: MANIFEST line %d: %s listed twice", n, c.Name)
		}
		seen[c.Name] = true
		if _, err := c.Message(); err != nil {
			return nil, fmt.Errorf("corpus: MANIFEST line %d: %w", n, err)
		}
		cases = append(cases, c)
	}
	entries, err := files.ReadDir("testdata")
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".eml"); ok && !seen[name] {
			return nil, fmt.Errorf("corpus: testdata/%s is not in the MANIFEST", e.Name())
		}
	}
	return cases, nil
}

// generator returns what makes a message too large to commit, nil for a
// message in a file.
func generator(name string) func() []byte {
	switch name {
	case "generated-header-line-1mb":
		return hugeHeaderLine
	case "generated-100000-header-fields":
		return manyHeaderFields
	}
	return nil
}

// head is the start of a generated message.
func head(name string) string {
	return "From: Alice <" + Sender + ">\r\nTo: Example Board <" + List + ">\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <corpus-" + name + "@example.net>\r\nMIME-Version: 1.0\r\n"
}

// hugeHeaderLine is a message whose Subject is one line of 1 MiB, followed
// by a valid header token.
func hugeHeaderLine() []byte {
	var b bytes.Buffer
	b.WriteString(head("generated-header-line-1mb"))
	b.WriteString("Subject: ")
	b.Write(bytes.Repeat([]byte("subject "), (1<<20)/8))
	b.WriteString("\r\nX-Restricted-Token: " + Valid + "\r\nContent-Type: text/plain\r\n\r\nA very long subject.\r\n")
	return b.Bytes()
}

// manyHeaderFields is a message with 100,000 header fields (about 2.3 MB
// of header), the valid header token last.
func manyHeaderFields() []byte {
	var b bytes.Buffer
	b.WriteString(head("generated-100000-header-fields"))
	b.WriteString("Subject: many fields\r\n")
	for i := range 100000 {
		fmt.Fprintf(&b, "X-Filler-%d: %d\r\n", i%100, i)
	}
	b.WriteString("X-Restricted-Token: " + Valid + "\r\nContent-Type: text/plain\r\n\r\nA very long header.\r\n")
	return b.Bytes()
}
