package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/token"
)

var recordLine = regexp.MustCompile(`(?m)^value: (v=DKIM1; k=(rsa|ed25519); p=[A-Za-z0-9+/=]+)$`)

// keygen runs `dkim keygen` and returns the key file and the TXT value it
// printed.
func keygen(t *testing.T, dir, kind, selector string, extra ...string) (string, string) {
	t.Helper()
	file := filepath.Join(dir, selector+".pem")
	args := append([]string{"dkim", "keygen", "--domain", "example.org", "--selector", selector, "--out", file, "--type", kind}, extra...)
	code, out, errOut := cli(args...)
	if code != exitOK {
		t.Fatalf("dkim keygen: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "name:  "+selector+"._domainkey.example.org\n") {
		t.Errorf("the record's name is not printed:\n%s", out)
	}
	m := recordLine.FindStringSubmatch(out)
	if m == nil || m[2] != kind {
		t.Fatalf("no %s TXT value in the output:\n%s", kind, out)
	}
	return file, m[1]
}

// TestDKIMKeygenRecordVerifies: the printed TXT record verifies a signature
// made by the rewriter with the written key, for go-msgauth and for
// python3-dkim; the key file is 0600 and not overwritten without --force.
func TestDKIMKeygenRecordVerifies(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"rsa", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file, txt := keygen(t, dir, kind, "rm2")
			fi, err := os.Stat(file)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
			}
			signer, warning, err := config.LoadKey(file)
			if err != nil || warning != "" {
				t.Fatalf("the written key does not load as a [[dkim]] key: %v %q", err, warning)
			}
			key := &rewrite.Key{Domain: "example.org", Selector: "rm2", Signer: signer}
			l := &policy.List{Name: "Board", Addr: address.MustParse("board@example.org")}
			msg := "From: Alice <alice@example.net>\r\nTo: board@example.org\r\nSubject: key test\r\n" +
				"Message-ID: <k1@example.net>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nSigned with a fresh key.\r\n"
			var out bytes.Buffer
			res, err := rewrite.Write(&out, strings.NewReader(msg), rewrite.Copy{
				List: l, Lists: []address.Address{l.Addr}, Delimiter: "+",
				Finder:    token.Finder{Prefix: "RMTOKEN", Header: "X-Restricted-Token"},
				MessageID: "<d1@mx.example.org>", Date: time.Now(), Key: key,
			})
			if err != nil {
				t.Fatal(err)
			}
			signed := append([]byte(res.Signature), out.Bytes()...)
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) {
					if name != "rm2._domainkey.example.org" {
						return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
					}
					return []string{txt}, nil
				},
			})
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.org" {
				t.Fatalf("go-msgauth with the printed record: %v %+v", err, vs)
			}
			dkimtest.VerifyPython(t, signed, dkimtest.Key{Config: config.DKIM{Domain: key.Domain, Selector: key.Selector, PrivateKeyFile: file, Signer: key.Signer}, TXT: txt})

			// The key is kept; --force replaces it with a new one.
			before, _ := os.ReadFile(file)
			code, _, errOut := cli("dkim", "keygen", "--domain", "example.org", "--selector", "rm2", "--out", file, "--type", kind)
			if after, _ := os.ReadFile(file); code != exitFailure || !strings.Contains(errOut, "--force") || !bytes.Equal(before, after) {
				t.Errorf("overwrite without --force: exit %d, %q, key changed %v", code, errOut, !bytes.Equal(before, after))
			}
			_, txt2 := keygen(t, dir, kind, "rm2", "--force")
			if after, _ := os.ReadFile(file); bytes.Equal(before, after) || txt2 == txt {
				t.Errorf("--force did not replace the key")
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("replaced key file has mode %v", fi.Mode().Perm())
			}
		})
	}
}

func TestDKIMKeygenUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"--domain", "example.org", "--selector", "s1"}, exitUsage, "--out are required"},
		{[]string{"--domain", "exa mple.org", "--selector", "s1", "--out", filepath.Join(dir, "a.pem")}, exitUsage, "is not a domain"},
		{[]string{"--domain", "example.org", "--selector", "s_1", "--out", filepath.Join(dir, "a.pem")}, exitUsage, "not a DKIM selector"},
		{[]string{"--domain", "example.org", "--selector", "s1", "--out", filepath.Join(dir, "a.pem"), "--type", "dsa"}, exitFailure, "neither"},
		{[]string{"--domain", "example.org", "--selector", "s1", "--out", filepath.Join(dir, "a.pem"), "--bits", "1024"}, exitFailure, "2048 to 8192"},
		{[]string{"--domain", "example.org", "--selector", "s1", "--out", filepath.Join(dir, "nodir", "a.pem")}, exitFailure, "no such file"},
	} {
		code, _, errOut := cli(append([]string{"dkim", "keygen"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.text) {
			t.Errorf("keygen %q: exit %d, %q; want %d and %q", c.args, code, errOut, c.code, c.text)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a.pem")); err == nil {
		t.Errorf("a refused keygen left a key file")
	}
}

// TestDKIMCheck: per domain, a matching, a different, a revoked and a
// missing record, and a failing lookup; exit 1 unless all match.
func TestDKIMCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := map[string]string{} // domain → key file
	records := map[string][]string{}
	for _, d := range []struct{ domain, kind string }{
		{"example.org", "rsa"}, {"example.com", "ed25519"}, {"example.net", "rsa"}, {"example.edu", "rsa"}, {"example.info", "rsa"}, {"example.biz", "ed25519"},
	} {
		file := filepath.Join(dir, d.domain+".pem")
		code, out, errOut := cli("dkim", "keygen", "--domain", d.domain, "--selector", "s1", "--out", file, "--type", d.kind)
		if code != exitOK {
			t.Fatalf("keygen: %s", errOut)
		}
		keys[d.domain] = file
		records["s1._domainkey."+d.domain] = []string{"google-site-verification=abc", recordLine.FindStringSubmatch(out)[1]}
	}
	// example.net publishes another key; example.info revoked its key;
	// example.edu publishes nothing; example.biz's lookup fails.
	_, other := keygen(t, dir, "rsa", "other")
	records["s1._domainkey.example.net"] = []string{other}
	records["s1._domainkey.example.info"] = []string{"v=DKIM1; k=rsa; p="}
	delete(records, "s1._domainkey.example.edu")
	lookup := func(_ context.Context, name string) ([]string, error) {
		if name == "s1._domainkey.example.biz" {
			return nil, &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true}
		}
		if r, ok := records[name]; ok {
			return r, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	conf := filepath.Join(dir, "restrictedmail.toml")
	writeConf := func(domains ...string) {
		t.Helper()
		var doc strings.Builder
		doc.WriteString("hostname = \"mx.example.org\"\n[store]\npath = \"state.db\"\n")
		for _, d := range domains {
			doc.WriteString("[[dkim]]\ndomain = \"" + d + "\"\nselector = \"s1\"\nprivate_key_file = \"" + keys[d] + "\"\n")
		}
		doc.WriteString("[[lists]]\naddress = \"board@example.org\"\nbounce_address = \"board-bounces@example.org\"\n")
		if err := os.WriteFile(conf, []byte(doc.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("example.org", "example.com", "example.net", "example.edu", "example.info", "example.biz")
	var out, errOut bytes.Buffer
	code := dkimCommand(context.Background(), []string{"check", "--config", conf}, &out, &errOut, lookup)
	if code != exitFailure {
		t.Errorf("exit %d, want 1 (%s)", code, errOut.String())
	}
	for _, want := range []string{
		"example.org: s1._domainkey.example.org: OK: the published rsa-2048 key matches",
		"example.com: s1._domainkey.example.com: OK: the published ed25519 key matches",
		"example.net: s1._domainkey.example.net: MISMATCH: the published rsa key is not the configured rsa-2048 key",
		"example.edu: s1._domainkey.example.edu: MISSING: no TXT record",
		"example.info: s1._domainkey.example.info: MISMATCH: the record has an empty p=: the key is revoked",
		"example.biz: s1._domainkey.example.biz: LOOKUP FAILED: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// Only the matching keys: exit 0.
	writeConf("example.org", "example.com")
	out.Reset()
	if code := dkimCommand(context.Background(), []string{"check", "--config", conf}, &out, &errOut, lookup); code != exitOK || strings.Count(out.String(), ": OK: ") != 2 {
		t.Errorf("all matching: exit %d\n%s", code, out.String())
	}
}
