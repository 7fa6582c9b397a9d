package config

import (
	"testing"
	"time"
)

func TestWebValid(t *testing.T) {
	cfg := mustLoad(t, minimal+`owners = ["Secretary@Example.org"]
[api]
listen = "inet:127.0.0.1:8027"
[web]
enabled = true
base_url = "https://lists.example.org/"
admins = ["root@example.org"]
trusted_user_header = "X-Forwarded-User"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
session_lifetime = "1h"
`)
	w := cfg.Web
	if !w.Enabled || w.Base == nil || w.Base.Host != "lists.example.org" || len(w.AdminAddrs) != 1 || len(w.Proxies) != 2 || w.SessionLifetime.D() != time.Hour {
		t.Fatalf("web %+v", w)
	}
	if w.From.String() != "board-bounces@example.org" {
		t.Errorf("sign_in_from defaults to %s, want the first list's bounce address", w.From)
	}
	if len(cfg.Lists[0].OwnerAddrs) != 1 || cfg.Lists[0].OwnerAddrs[0].Key() != "secretary@example.org" {
		t.Errorf("owners %v", cfg.Lists[0].OwnerAddrs)
	}
	if d := Default().Web; d.Enabled || d.SessionLifetime.D() != DefaultSessionLifetime {
		t.Errorf("default web %+v", d)
	}
}

func TestWebProblems(t *testing.T) {
	for _, tt := range []struct {
		name, doc, key, text string
	}{
		{"no api", "[web]\nenabled = true\nbase_url = \"https://l.example.org/\"\nadmins = [\"a@example.org\"]\n", "web.enabled", "api.listen"},
		{"no base_url", "[api]\nlisten = \"inet:127.0.0.1:8027\"\n[web]\nenabled = true\nadmins = [\"a@example.org\"]\n", "web.base_url", "required"},
		{"http off loopback", "[web]\nbase_url = \"http://lists.example.org/\"\n", "web.base_url", "https"},
		{"not a URL", "[web]\nbase_url = \"lists.example.org\"\n", "web.base_url", "not an http(s) URL"},
		{"query", "[web]\nbase_url = \"https://l.example.org/?a=b\"\n", "web.base_url", "no user, query"},
		{"nobody", "[api]\nlisten = \"inet:127.0.0.1:8027\"\n[web]\nenabled = true\nbase_url = \"https://l.example.org/\"\n", "web.admins", "nobody could sign in"},
		{"bad admin", "[web]\nadmins = [\"not an address\"]\n", "web.admins[0]", "not an address"},
		{"header without proxies", "[web]\ntrusted_user_header = \"X-User\"\n", "web.trusted_user_header", "trusted_proxies"},
		{"bad proxy", "[web]\ntrusted_proxies = [\"nowhere\"]\n", "web.trusted_proxies[0]", "not an address"},
		{"short session", "[web]\nsession_lifetime = \"1m\"\n", "web.session_lifetime", "from 5m0s"},
		{"long session", "[web]\nsession_lifetime = \"90d\"\n", "web.session_lifetime", "to 720h0m0s"},
		{"bad sender", "[web]\nsign_in_from = \"@@\"\n", "web.sign_in_from", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ps, _ := load(t, minimal+"\n"+tt.doc)
			wantError(t, ps, tt.key, tt.text)
		})
	}
	t.Run("bad owner", func(t *testing.T) {
		_, ps, _ := load(t, minimal+"owners = [\"x\"]\n")
		wantError(t, ps, "lists[0].owners[0]", "")
	})
	t.Run("no key for sign_in_from", func(t *testing.T) {
		_, ps, _ := load(t, minimal+"\n[api]\nlisten = \"inet:127.0.0.1:8027\"\n[web]\nenabled = true\nbase_url = \"https://l.example.org/\"\nadmins = [\"a@example.org\"]\nsign_in_from = \"rm@other.example\"\n")
		wantWarning(t, ps, "web.sign_in_from", "unsigned")
	})
}
