package config

import (
	"strings"
	"testing"
)

func TestHTTPSection(t *testing.T) {
	t.Parallel()
	// Off by default.
	cfg := mustLoad(t, minimal)
	if cfg.HTTP.Listen != "" || cfg.HTTP.Addr != (Listen{}) {
		t.Errorf("default [http] = %+v, want off", cfg.HTTP)
	}
	cfg = mustLoad(t, minimal+"\n[http]\nlisten = \"inet:127.0.0.1:8026\"\n")
	if cfg.HTTP.Addr != (Listen{"tcp", "127.0.0.1:8026"}) {
		t.Errorf("http.listen parsed as %+v", cfg.HTTP.Addr)
	}
	// Like the milter's and the LMTP endpoint's: the network needs an allow-list.
	doc := minimal + "\n[http]\nlisten = \"inet:192.0.2.1:8026\"\n"
	_, ps, _ := load(t, doc)
	if p := wantError(t, ps, "http.listen", "http.allowed_networks"); p.Line != lineOf(t, doc, "192.0.2.1") {
		t.Errorf("line %d, want %d", p.Line, lineOf(t, doc, "192.0.2.1"))
	}
	cfg = mustLoad(t, minimal+"\n[http]\nlisten = \"inet:192.0.2.1:8026\"\nallowed_networks = [\"192.0.2.0/24\", \"2001:db8::1\"]\n")
	if len(cfg.HTTP.Networks) != 2 || cfg.HTTP.Networks[0].String() != "192.0.2.0/24" || cfg.HTTP.Networks[1].Bits() != 128 {
		t.Errorf("allowed_networks = %v", cfg.HTTP.Networks)
	}
	for text, doc := range map[string]string{
		"is not \"inet:host:port\"": minimal + "\n[http]\nlisten = \"8026\"\n",
		"scrapes over TCP":          minimal + "\n[http]\nlisten = \"unix:/run/restrictedmail/http.sock\"\n",
		"not an address":            minimal + "\n[http]\nlisten = \"inet:127.0.0.1:8026\"\nallowed_networks = [\"nope\"]\n",
		"unknown key":               minimal + "\n[http]\nlisten = \"inet:127.0.0.1:8026\"\nport = 8026\n",
	} {
		_, ps, _ := load(t, doc)
		found := false
		for _, p := range ps {
			if !p.Warning && strings.HasPrefix(p.Key, "http.") && strings.Contains(p.Message, text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no http error %q in:\n%s", text, dump(ps))
		}
	}
}
