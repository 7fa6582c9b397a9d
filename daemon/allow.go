package daemon

import (
	"log/slog"
	"net"

	"github.com/restrictedmail/restrictedmail/config"
)

// allowOnly wraps ln so that it hands out only connections from the
// allowed networks; others are closed at once. nets is read for every
// connection, so a reload that changes allowed_networks applies to the
// next one. The LMTP endpoint checks in its own session (so that it can
// answer 554); the milter protocol and HTTP have no such place, so their
// listeners are wrapped.
func allowOnly(ln net.Listener, nets func() []config.NetworkSpec, log *slog.Logger) net.Listener {
	return &allowListener{Listener: ln, nets: nets, log: log}
}

type allowListener struct {
	net.Listener
	nets func() []config.NetworkSpec
	log  *slog.Logger
}

func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if config.ClientAllowed(c.RemoteAddr(), l.nets()) {
			return c, nil
		}
		l.log.Warn("refused a client outside allowed_networks", "client", c.RemoteAddr().String())
		c.Close()
	}
}
