package config

// HTTP configures the optional endpoint that Prometheus scrapes (/metrics)
// and that supervisors probe (/healthz, /readyz). It is off by default.
type HTTP struct {
	Listen          string   `toml:"listen" reload:"restart"` // "" disables it; "inet:127.0.0.1:8026"
	AllowedNetworks []string `toml:"allowed_networks"`

	Addr     Listen        `toml:"-" reload:"restart,with=listen"`
	Networks []NetworkSpec `toml:"-"`
}

// http checks the [http] section. Metrics are scraped over TCP, so only an
// inet listener is taken; the allow-list rule is the milter's and the LMTP
// endpoint's: a non-loopback address needs allowed_networks.
func (v *validator) http() {
	h := &v.cfg.HTTP
	h.Addr, h.Networks = v.listener("http", h.Listen, h.AllowedNetworks)
	if h.Addr.Network == "unix" {
		v.addf("http.listen", "%q: Prometheus scrapes over TCP; use \"inet:127.0.0.1:8026\"", h.Listen)
		h.Addr = Listen{}
	}
}
