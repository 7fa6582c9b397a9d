package generation

import (
	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/web"
)

// WebSettings maps [web] and the lists' owners for the web page.
func WebSettings(g *Generation) web.Settings {
	cfg := g.Config
	owners := make(map[string][]address.Address, len(cfg.Lists))
	for _, l := range cfg.Lists {
		if len(l.OwnerAddrs) > 0 {
			owners[l.Addr.Key()] = l.OwnerAddrs
		}
	}
	w := cfg.Web
	return web.Settings{
		Tokens: TokenSettings(g), BaseURL: w.Base, Admins: w.AdminAddrs, Owners: owners,
		TrustedUserHeader: w.TrustedUserHeader, TrustedProxies: w.Proxies, SessionLifetime: w.SessionLifetime.D(),
	}
}
