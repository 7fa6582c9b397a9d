package milter

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// benchMail is a typical small message: five header fields, a 2 KB body.
func benchMail(rcpts []string, extra ...field) testMessage {
	m := newMail("", rcpts, extra...)
	m.headers = append(m.headers, field{"To", strings.Join(rcpts, ", ")}, field{"Date", "Tue, 19 May 2015 14:10:13 +0300"})
	return m
}

// noopServer is the baseline: a go-milter server that does nothing, with
// go-milter's default negotiation (every event, every reply).
func noopServer(b *testing.B) string {
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// BenchmarkOrdinaryMessage measures one ordinary message over loopback with
// the go-milter client, as Postfix would send it: the baseline is a no-op
// milter that takes every event; restrictedmail takes MAIL FROM (no reply),
// RCPT and DATA, where it accepts. Compare the two ns/op: the ratio is what
// the milter costs beyond the cheapest possible milter.
func BenchmarkOrdinaryMessage(b *testing.B) {
	_, body := multipart("LEGOTOKEN", "")
	run := func(b *testing.B, addr string) {
		cs, err := gomilter.NewClient("tcp", addr).Session(gomilter.NewMacroBag())
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		cs.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.1")
		cs.Helo("client.example.net")
		m := benchMail([]string{ordinary, "erin@example.com"})
		r := bytes.NewReader(body)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			r.Reset(body)
			m.body = r
			out := send(b, cs, m)
			if out.act == nil || out.act.Type != gomilter.ActionAccept {
				b.Fatalf("not accepted: %v", out.act)
			}
		}
	}
	b.Run("baseline=noop-milter", func(b *testing.B) { run(b, noopServer(b)) })
	b.Run("restrictedmail", func(b *testing.B) { run(b, newHarness(b).addr) })
}

// BenchmarkOrdinaryCallbacks is the milter's own share of an ordinary
// message, without the protocol: MAIL FROM, two RCPTs, DATA, abort.
func BenchmarkOrdinaryCallbacks(b *testing.B) {
	cfg := testConfig(b, b.TempDir())
	s := New(Options{Rules: rulesOf(cfg)})
	c := &session{srv: s}
	mod := &fakeModifier{}
	b.ReportAllocs()
	for b.Loop() {
		c.MailFrom(sender, "", mod)
		c.RcptTo(ordinary, "", mod)
		c.RcptTo("Erin@Example.COM", "", mod)
		c.Data(mod)
		c.Abort(mod)
	}
}

// BenchmarkRestrictedVerdict measures the verdict latency of a 10 KB
// message to a restricted address with a valid token, from MAIL FROM to the
// decision, per carrier: the subaddress and the header decide at end of
// headers; the token part at end of message, after the body scan.
func BenchmarkRestrictedVerdict(b *testing.B) {
	// A real log handler: one line per restricted message is part of the cost.
	h := newHarness(b, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	tok := h.addToken(b, nil)
	filler := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678\r\n", 10<<10/76)
	body := func(tokenPart bool) []byte {
		var buf bytes.Buffer
		buf.WriteString("--b1\r\nContent-Type: text/plain\r\n\r\n" + filler)
		if tokenPart {
			buf.WriteString("--b1\r\nContent-Type: text/plain; name=token\r\n\r\nLEGOTOKEN" + tok + "\r\n")
		}
		buf.WriteString("--b1--\r\n")
		return buf.Bytes()
	}
	cases := []struct {
		name  string
		m     testMessage
		body  []byte
		stage string
	}{
		{"subaddress", benchMail([]string{sub(board, tok)}), body(false), "eoh"},
		{"header", benchMail([]string{board}, field{"X-Restricted-Token", tok}), body(false), "eoh"},
		{"part", benchMail([]string{board}), body(true), "eom"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			cs := h.session(b)
			r := bytes.NewReader(tc.body)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.Reset(tc.body)
				tc.m.body = r
				wantAccept(b, send(b, cs, tc.m), tc.stage)
			}
		})
	}
}
