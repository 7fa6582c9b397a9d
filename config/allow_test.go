package config

import (
	"net"
	"net/netip"
	"testing"
)

// TestClientAllowed: the allow-list rule that the LMTP endpoint applies in
// its sessions and the daemon at the milter's and HTTP listeners.
func TestClientAllowed(t *testing.T) {
	t.Parallel()
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	nets := []NetworkSpec{netip.MustParsePrefix("192.0.2.0/24")}
	for _, c := range []struct {
		addr net.Addr
		nets []NetworkSpec
		want bool
	}{
		{tcp("127.0.0.1:1"), nil, true},
		{tcp("[::1]:1"), nil, true},
		{tcp("192.0.2.7:1"), nil, false},
		{tcp("192.0.2.7:1"), nets, true},
		{tcp("[::ffff:192.0.2.7]:1"), nets, true},
		{tcp("198.51.100.1:1"), nets, false},
		{tcp("127.0.0.1:1"), nets, false},
		{&net.UnixAddr{Name: "@", Net: "unix"}, nil, true},
	} {
		if got := ClientAllowed(c.addr, c.nets); got != c.want {
			t.Errorf("ClientAllowed(%v, %v) = %v, want %v", c.addr, c.nets, got, c.want)
		}
	}
}
