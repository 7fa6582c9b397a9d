package config

import (
	"github.com/restrictedmail/restrictedmail/address"
	"github.com/restrictedmail/restrictedmail/token"
)

// Finder returns the token finder for the [tokens] section, so that the
// milter and the LMTP endpoint look for tokens identically.
func (c *Config) Finder() token.Finder {
	return token.Finder{Prefix: c.Tokens.Prefix, Header: c.Tokens.Header}
}

// ListAddresses returns the address of every restricted list.
func (c *Config) ListAddresses() []address.Address {
	out := make([]address.Address, 0, len(c.Lists))
	for i := range c.Lists {
		out = append(out, c.Lists[i].Addr)
	}
	return out
}
