package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/dkimtest"
	"github.com/restrictedmail/restrictedmail/internal/testsmtp"
)

// TestWebOnTheAPIListener: with [web] enabled the API's listener serves
// the page under / and the API under /api/v1/, and a sign-in request
// sends its mail through the relay, DKIM-signed, from the first list's
// bounce address.
func TestWebOnTheAPIListener(t *testing.T) {
	dir := t.TempDir()
	relay := testsmtp.Start(t, testsmtp.Options{})
	key := dkimtest.NewKey(t, "ed25519", "example.org", "rm1")
	doc := `hostname = "mx.example.org"
[store]
path = "state.db"
[milter]
listen = ""
[lmtp]
listen = "inet:127.0.0.1:0"
[relay]
address = "` + relay.Addr() + `"
[api]
listen = "inet:127.0.0.1:0"
[web]
enabled = true
base_url = "http://127.0.0.1:8027/"
[[dkim]]
domain = "example.org"
selector = "rm1"
private_key_file = "` + key.Config.PrivateKeyFile + `"
[[lists]]
address = "board@example.org"
recipients = ["m1@example.net"]
bounce_address = "board-bounces@example.org"
owners = ["secretary@example.org"]
`
	path := filepath.Join(dir, "restrictedmail.toml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, problems := config.Load(path)
	if cfg == nil {
		t.Fatal(problems.Error())
	}
	d, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	base := "http://" + d.APIAddr().String()
	if code, body := get(t, base+"/signin"); code != http.StatusOK || !strings.Contains(body, `action="/signin"`) {
		t.Fatalf("GET /signin: %d", code)
	}
	if code, _ := get(t, base+"/api/v1/openapi.yaml"); code != http.StatusOK {
		t.Fatalf("the API under the page: %d", code)
	}
	resp, err := http.PostForm(base+"/signin", url.Values{"email": {"secretary@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	relay.WaitRecipients(t, 1, 10*time.Second)
	m := relay.Messages()[0]
	if m.From != "board-bounces@example.org" || m.Rcpts[0] != "secretary@example.org" {
		t.Fatalf("sign-in mail %s → %v", m.From, m.Rcpts)
	}
	if got := dkimtest.VerifyGo(t, m.Data, key); len(got) != 1 {
		t.Fatalf("sign-in mail not signed: %v", got)
	}
	// English is sent as 7bit: the link is whole in the raw mail.
	if !regexp.MustCompile(`\r\nhttp://127\.0\.0\.1:8027/signin/link\?t=[A-Za-z0-9_-]{43}\r\n`).Match(m.Data) {
		t.Errorf("no link to base_url in:\n%s", m.Data)
	}
}
