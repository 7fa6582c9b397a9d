package rewrite

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/mailheader"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/token"
)

var fixedDate = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testList(addr, name string, hide bool) *policy.List {
	return &policy.List{Name: name, Addr: address.MustParse(addr), HideSender: hide}
}

// legoCopy is the Copy for LEGO's fixtures (prefix LEGOTOKEN, restricted@abakus.no).
func legoCopy(key *Key) Copy {
	l := testList("restricted@abakus.no", "Abakus Restricted", false)
	return Copy{
		List: l, Lists: []address.Address{l.Addr}, Delimiter: "+",
		Finder:    token.Finder{Prefix: "LEGOTOKEN", Header: "X-Restricted-Token"},
		Token:     "test_token",
		MessageID: "<d1@mx.abakus.no>", Date: fixedDate, Key: key,
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../token/testdata/lego/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, msg []byte, c Copy) ([]byte, Result) {
	t.Helper()
	var out bytes.Buffer
	res, err := Write(&out, bytes.NewReader(msg), c)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if int64(out.Len()) != res.Size {
		t.Errorf("Result.Size = %d, wrote %d", res.Size, out.Len())
	}
	return append([]byte(res.Signature), out.Bytes()...), res
}

// header parses the copy's header into name → values, in order.
func header(t *testing.T, msg []byte) (fields []string, get func(string) []string, body []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := mailheader.Read(br)
	if err != nil {
		t.Fatal(err)
	}
	for f := h.Fields(); f.Next(); {
		fields = append(fields, f.Key())
	}
	rest := new(bytes.Buffer)
	rest.ReadFrom(br)
	return fields, func(k string) []string { return h.Values(k) }, rest.Bytes()
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestLEGOValidCopy(t *testing.T) {
	t.Parallel()
	key := dkimtest.NewKey(t, "rsa", "abakus.no", "rm1")
	msg := fixture(t, "valid.eml")
	cp, res := write(t, msg, legoCopy(keyOf(key)))

	if res.RemovedParts != 1 {
		t.Errorf("removed %d token parts, want 1", res.RemovedParts)
	}
	_, get, body := header(t, cp)
	if got := get("From"); len(got) != 1 || got[0] != `"Eirik via Abakus Restricted" <restricted@abakus.no>` {
		t.Errorf("From = %q", got)
	}
	if got := get("Reply-To"); len(got) != 1 || got[0] != `"Eirik" <eirik@sylliaas.no>` {
		t.Errorf("Reply-To = %q", got)
	}
	for k, want := range map[string]string{
		"List-Id": `"Abakus Restricted" <restricted.abakus.no>`, "List-Post": "NO", "Precedence": "list",
		"X-Loop": "restricted@abakus.no", "Subject": "Restricted Message",
		"Message-Id": "<ZrDihvWzIIscOerqjbDqKFutoNapxmdb@luke.abakus.no>",
		"Date":       fixedDate.Format(time.RFC1123Z), // valid.eml has none
	} {
		if got := get(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The body is the original's, minus the token part, with CRLF endings.
	orig := string(msg[strings.Index(string(msg), "\n\n")+2:])
	tokenPart := orig[strings.LastIndex(orig, "--001a1141b90e89018f054eb72091\nContent-Type: text/plain; charset=US-ASCII"):strings.LastIndex(orig, "--001a1141b90e89018f054eb72091--")]
	if want := crlf(strings.Replace(orig, tokenPart, "", 1)); string(body) != want {
		t.Errorf("body differs from the original minus the token part:\n got %q\nwant %q", body, want)
	}
	if bytes.Contains(bytes.ToLower(cp), []byte("test_token")) || bytes.Contains(cp, []byte("TEVHT1RPS0VO")) || bytes.Contains(cp, []byte("token.txt")) {
		t.Errorf("a trace of the token is left in the copy:\n%s", cp)
	}
	if !bytes.HasPrefix(cp, []byte("DKIM-Signature:")) {
		t.Errorf("the copy does not start with its DKIM signature")
	}
	// Over-signed (listed once more than they appear), so that a second
	// instance added on the way breaks the signature: README's promise.
	sig := strings.Join(strings.Fields(res.Signature), "")
	for _, f := range []string{"From:From:", "Reply-To:Reply-To:", "Subject:Subject:", "List-Id:List-Id:", "List-Post:List-Post:"} {
		if !strings.Contains(sig, f) {
			t.Errorf("the signature's h= does not over-sign %q: %s", strings.TrimSuffix(f, ":"), res.Signature)
		}
	}
	if got := dkimtest.VerifyGo(t, cp, key); len(got) != 1 || got[0] != "abakus.no" {
		t.Errorf("go-msgauth passed %v, want [abakus.no]", got)
	}
	dkimtest.VerifyPython(t, cp, key)
}

func TestRemovedHeaders(t *testing.T) {
	t.Parallel()
	msg := []byte(crlf("Received: from a by b\nReturn-Path: <x@y>\nARC-Seal: i=1\nArc-Message-Signature: i=1\n"+
		"ARC-Authentication-Results: i=1\nDelivered-To: board@example.org\nX-Original-To: board@example.org\n"+
		"Bcc: secret@example.net\nDisposition-Notification-To: a@example.net\nReturn-Receipt-To: a@example.net\n"+
		"X-Confirm-Reading-To: a@example.net\nX-Restricted-Token: abc123\nList-Unsubscribe: <mailto:x@y>\n"+
		"Precedence: bulk\nSender: s@example.net\nErrors-To: e@example.net\n") + string(fixture(t, "clean_headers.eml")))
	cp, _ := write(t, msg, legoCopy(nil))
	fields, _, _ := header(t, cp)
	removed := map[string]bool{}
	for _, k := range []string{"Received", "Return-Path", "Arc-Seal", "Arc-Message-Signature", "Arc-Authentication-Results",
		"Delivered-To", "X-Original-To", "Bcc", "Disposition-Notification-To", "Return-Receipt-To", "X-Confirm-Reading-To",
		"X-Restricted-Token", "List-Unsubscribe", "Sender", "Errors-To", "Dkim-Signature", "Domainkey-Signature",
		"Authentication-Results", "Received-Spf"} {
		removed[k] = true
	}
	precedence := 0
	for _, f := range fields {
		if removed[f] {
			t.Errorf("%s is still in the copy", f)
		}
		if f == "Precedence" {
			precedence++
		}
	}
	if precedence != 1 {
		t.Errorf("%d Precedence fields, want the list's one", precedence)
	}
	if bytes.Contains(cp, []byte("secret@example.net")) || bytes.Contains(cp, []byte("abc123")) {
		t.Errorf("Bcc or the token header leaked:\n%s", cp)
	}
}

func TestKeptFieldsKeepOrderAndBytes(t *testing.T) {
	t.Parallel()
	orig := "Subject: a long subject\r\n\tfolded on purpose\r\nX-Custom:  two  spaces \r\nTo: a@example.org,\r\n  b@example.org\r\nFrom: A <a@example.net>\r\nMessage-ID: <m@x>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	msg := []byte(orig + "\r\nbody\r\n")
	cp, _ := write(t, msg, legoCopy(nil))
	want := "Subject: a long subject\r\n\tfolded on purpose\r\nX-Custom:  two  spaces \r\nTo: a@example.org,\r\n  b@example.org\r\nMessage-ID: <m@x>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
	if !bytes.HasSuffix(cp, []byte(want)) {
		t.Errorf("kept fields changed or reordered:\n%s", cp)
	}
}

func TestHideSender(t *testing.T) {
	t.Parallel()
	c := legoCopy(nil)
	c.HideSender = true
	msg := []byte(crlf("From: Eirik <eirik@sylliaas.no>\nReply-To: eirik@sylliaas.no\nX-Sender: eirik@sylliaas.no\nSubject: s\n\nhi\n"))
	cp, _ := write(t, msg, c)
	_, get, _ := header(t, cp)
	if got := get("From"); len(got) != 1 || got[0] != `"Abakus Restricted" <restricted@abakus.no>` {
		t.Errorf("From = %q", got)
	}
	if bytes.Contains(cp, []byte("sylliaas")) {
		t.Errorf("the hidden sender shows in the copy:\n%s", cp)
	}
}

func TestReplyToKeptAndNoAddressName(t *testing.T) {
	t.Parallel()
	msg := []byte(crlf("From: eirik@sylliaas.no\nReply-To: Team <team@example.net>\n\nhi\n"))
	cp, _ := write(t, msg, legoCopy(nil))
	_, get, _ := header(t, cp)
	if got := get("From"); len(got) != 1 || got[0] != `"eirik@sylliaas.no via Abakus Restricted" <restricted@abakus.no>` {
		t.Errorf("From = %q", got)
	}
	if got := get("Reply-To"); len(got) != 1 || got[0] != "Team <team@example.net>" {
		t.Errorf("the author's Reply-To was not kept: %q", got)
	}
}

func TestEncodedNameAndGarbageFrom(t *testing.T) {
	t.Parallel()
	msg := []byte(crlf("From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@example.de>\n\nhi\n"))
	cp, _ := write(t, msg, legoCopy(nil))
	_, get, _ := header(t, cp)
	if got := get("From"); len(got) != 1 || got[0] != `=?utf-8?q?J=C3=BCrgen_M=C3=BCller_via_Abakus_Restricted?= <restricted@abakus.no>` {
		t.Errorf("From = %q", got)
	}
	msg = []byte(crlf("From: <<<not an address\n\nhi\n"))
	cp, _ = write(t, msg, legoCopy(nil))
	_, get, _ = header(t, cp)
	if got := get("From"); len(got) != 1 || got[0] != `"Abakus Restricted" <restricted@abakus.no>` {
		t.Errorf("From for an unparseable author = %q", got)
	}
	if got := get("Reply-To"); len(got) != 0 {
		t.Errorf("Reply-To for an unparseable author = %q", got)
	}
}

func TestScrubsSubaddressTokens(t *testing.T) {
	t.Parallel()
	board := address.MustParse("board@example.org")
	events := address.MustParse("events@example.org")
	c := Copy{
		List: &policy.List{Name: "Board", Addr: board}, Lists: []address.Address{board, events}, Delimiter: "+",
		Finder: token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"}, Token: "tok123abc",
		MessageID: "<m@x>", Date: fixedDate,
	}
	msg := []byte(crlf("From: a@example.net\nTo: Board <Board+tok123abc@Example.org>, events+other_tok@example.org,\n other+keep@example.org, myboard+keep@example.org\n" +
		"Cc: board+tok123abc@example.org\nSubject: about tok123abc\n\nbody\n"))
	cp, _ := write(t, msg, c)
	_, get, _ := header(t, cp)
	if got := get("To")[0]; got != "Board <Board@Example.org>, events@example.org, other+keep@example.org, myboard+keep@example.org" {
		t.Errorf("To = %q", got)
	}
	if got := get("Cc")[0]; got != "board@example.org" {
		t.Errorf("Cc = %q", got)
	}
	if got := get("Subject")[0]; got != "about [token removed]" {
		t.Errorf("Subject = %q", got)
	}
}

func TestLatin1EightBitBodyUntouched(t *testing.T) {
	t.Parallel()
	body := "Gr\xfc\xdfe aus K\xf6ln, \xe9t\xe9 \xe0 la plage.\r\n\r\n-- \r\nJ\xfcrgen\r\n"
	msg := []byte("From: a@example.net\r\nX-Restricted-Token: abc\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)
	key := dkimtest.NewKey(t, "ed25519", "abakus.no", "ed")
	c := legoCopy(keyOf(key))
	c.Finder.Header = "X-Restricted-Token"
	cp, _ := write(t, msg, c)
	_, _, got := header(t, cp)
	if string(got) != body {
		t.Errorf("body changed:\n got %q\nwant %q", got, body)
	}
	dkimtest.VerifyGo(t, cp, key)
	dkimtest.VerifyPython(t, cp, key)
}

func TestMissingMessageIDAndLFInput(t *testing.T) {
	t.Parallel()
	cp, _ := write(t, fixture(t, "no_message_id.eml"), legoCopy(nil))
	_, get, _ := header(t, cp)
	if got := get("Message-Id"); len(got) != 1 || got[0] != "<d1@mx.abakus.no>" {
		t.Errorf("Message-ID = %q", got)
	}
	if got := get("Date"); len(got) != 1 || got[0] != "Tue, 19 May 2015 14:10:13 +0300" {
		t.Errorf("the original Date was not kept: %q", got)
	}
	if bytes.Contains(bytes.ReplaceAll(cp, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("a bare LF is left in the copy")
	}
}

func TestCRLFWriterAcrossWrites(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := &crlfWriter{w: &b}
	for _, s := range []string{"a\r", "\nb\n", "\n", "c\r\n", "d"} {
		w.Write([]byte(s))
	}
	if got := b.String(); got != "a\r\nb\r\n\r\nc\r\nd" {
		t.Errorf("got %q", got)
	}
	if w.n != int64(b.Len()) {
		t.Errorf("counted %d bytes, wrote %d", w.n, b.Len())
	}
}

func TestHeaderTooLarge(t *testing.T) {
	t.Parallel()
	msg := "Subject: " + strings.Repeat("x", mailheader.MaxBytes) + "\r\n\r\nbody\r\n"
	var out bytes.Buffer
	if _, err := Write(&out, strings.NewReader(msg), legoCopy(nil)); err == nil {
		t.Fatal("a header above the limit was accepted")
	}
}

// keyOf is the rewrite key of a test key.
func keyOf(k dkimtest.Key) *Key {
	return &Key{Domain: k.Config.Domain, Selector: k.Config.Selector, Signer: k.Config.Signer}
}
