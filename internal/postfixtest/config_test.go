package postfixtest

import (
	"strings"
	"testing"
	"time"
)

// These tests need no Postfix: they check what the harness generates and
// parses.

func TestInlineMap(t *testing.T) {
	got, err := inlineMap(map[string]string{
		"z.example":         "retry:4.3.0 later, please",
		"board@example.org": "lmtp:inet:127.0.0.1:8024",
	})
	want := "inline:{ {board@example.org=lmtp:inet:127.0.0.1:8024}, {z.example=retry:4.3.0 later, please} }"
	if err != nil || got != want {
		t.Errorf("inlineMap = %q, %v; want %q", got, err, want)
	}
	if got, err := inlineMap(nil); got != "" || err != nil {
		t.Errorf("inlineMap(nil) = %q, %v", got, err)
	}
	if _, err := inlineMap(map[string]string{"a@example.org": "x}"}); err == nil {
		t.Error("inlineMap accepted a brace in a value")
	}
}

// params parses main.cf text into name -> value.
func params(t *testing.T, mainCF string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for line := range strings.SplitSeq(mainCF, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " = ")
		if !ok {
			name, ok = strings.CutSuffix(line, " =")
		}
		if !ok {
			t.Fatalf("bad main.cf line %q", line)
		}
		if _, dup := m[name]; dup {
			t.Errorf("%s set twice", name)
		}
		m[name] = value
	}
	return m
}

func TestMainCF(t *testing.T) {
	l := newLayout("/tmp/postfixtest-1")
	text, err := mainCF(l, "mx-1.postfixtest.test", Options{
		Milter:       "inet:127.0.0.1:8025",
		Transport:    map[string]string{"board@example.org": "lmtp:inet:127.0.0.1:8024"},
		RelayHost:    "[127.0.0.1]:2525",
		RelayDomains: []string{"example.org", "example.com"},
		MainCF:       map[string]string{"queue_run_delay": "5s", "message_size_limit": "1000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := params(t, text)
	for name, want := range map[string]string{
		"queue_directory":       "/tmp/postfixtest-1/spool",
		"data_directory":        "/tmp/postfixtest-1/data",
		"maillog_file":          "/tmp/postfixtest-1/maillog",
		"mydestination":         "",
		"relay_domains":         "example.org, example.com",
		"relayhost":             "[127.0.0.1]:2525",
		"transport_maps":        "inline:{ {board@example.org=lmtp:inet:127.0.0.1:8024} }",
		"smtpd_milters":         "inet:127.0.0.1:8025",
		"milter_default_action": "tempfail",
		"recipient_delimiter":   "+",
		"queue_run_delay":       "5s", // overridden in place
		"message_size_limit":    "1000",
	} {
		if got, ok := p[name]; !ok || got != want {
			t.Errorf("%s = %q (set: %v), want %q", name, got, ok, want)
		}
	}
	if _, ok := p["default_transport"]; ok {
		t.Error("default_transport set although RelayHost is")
	}

	text, err = mainCF(l, "mx-1.postfixtest.test", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p = params(t, text)
	if _, ok := p["smtpd_milters"]; ok {
		t.Error("smtpd_milters set without Options.Milter")
	}
	if !strings.HasPrefix(p["default_transport"], "retry:") || p["relay_transport"] != p["default_transport"] {
		t.Errorf("without RelayHost: default_transport %q, relay_transport %q, want retry:", p["default_transport"], p["relay_transport"])
	}
	if p["relay_domains"] != "example.org" {
		t.Errorf("default relay_domains = %q", p["relay_domains"])
	}

	if _, err := mainCF(l, "x", Options{MainCF: map[string]string{"a": "b\nc = d"}}); err == nil {
		t.Error("mainCF accepted a newline in a value")
	}
}

func TestMasterCF(t *testing.T) {
	cf := masterCF(ports{smtp: 10025, reinject: 10026})
	for _, want := range []string{
		"127.0.0.1:10025 inet n - n - - smtpd\n",
		"127.0.0.1:10026 inet n - n - - smtpd\n  -o content_filter=\n",
		"no_milters",
		"postlog    unix-dgram n  -       n       -       1       postlogd\n",
	} {
		if !strings.Contains(cf, want) {
			t.Errorf("master.cf lacks %q:\n%s", want, cf)
		}
	}
	for line := range strings.SplitSeq(cf, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && !strings.HasPrefix(line, "#") && f[4] != "n" {
			t.Errorf("service with chroot: %q", line)
		}
	}
	if strings.Count(masterCF(ports{smtp: 10025}), "smtpd\n") != 1 {
		t.Error("reinjection smtpd without Options.Reinject")
	}
}

func TestParseQueue(t *testing.T) {
	// As printed by Postfix 3.7's postqueue -j.
	out := `{"queue_name": "deferred", "queue_id": "8B17B984F3D", "arrival_time": 1795559660, "message_size": 378, "forced_expire": false, "sender": "sender@example.net", "recipients": [{"address": "board+tok3n@example.org", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:34327: Connection refused"}]}
{"queue_name": "active", "queue_id": "BEEFC98432E", "arrival_time": 1795559661, "message_size": 407, "forced_expire": false, "sender": "", "recipients": [{"address": "a@example.org"}, {"address": "b@example.org", "orig_address": "B@example.org"}]}
`
	q, err := parseQueue([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 {
		t.Fatalf("got %d entries", len(q))
	}
	e := q[0]
	if e.QueueID != "8B17B984F3D" || e.QueueName != "deferred" || e.Sender != "sender@example.net" ||
		e.MessageSize != 378 || !e.ArrivalTime.Equal(time.Unix(1795559660, 0)) || len(e.Recipients) != 1 ||
		e.Recipients[0].DelayReason != "connect to 127.0.0.1[127.0.0.1]:34327: Connection refused" {
		t.Errorf("entry 0 = %+v", e)
	}
	if r := q[1].Recipients; len(r) != 2 || r[1].OrigAddress != "B@example.org" || r[0].DelayReason != "" {
		t.Errorf("entry 1 recipients = %+v", r)
	}
	if q, err := parseQueue(nil); err != nil || len(q) != 0 {
		t.Errorf("empty queue: %v, %v", q, err)
	}
}

func TestSubmitConnectionRefused(t *testing.T) {
	res := Submit(hostPort(freePort(t)), "a@example.net", []string{"b@example.org"}, []byte("x\r\n"))
	if res.Mail == nil || !strings.Contains(res.Mail.Error(), "connect") || len(res.Rcpt) != 0 || res.Data != nil {
		t.Errorf("Submit to a closed port = %+v", res)
	}
}
