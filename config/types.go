package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string ("30s", "72h", "4d").
// A bare integer is refused: TOML decoders read it as nanoseconds, which
// no administrator means.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText accepts Go durations plus a whole number of days ("4d").
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		// Beyond about 292 years a time.Duration overflows, and the product
		// would wrap to a negative or a small value; ParseDuration
		// refuses such values in its own units, so refuse them here too.
		if err == nil && n >= 0 && n <= int(math.MaxInt64/(24*time.Hour)) {
			*d = Duration(time.Duration(n) * 24 * time.Hour)
			return nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. \"30s\", \"72h\" or \"4d\")", s)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// FileMode is a Unix permission written as an octal string ("0660").
type FileMode uint32

// UnmarshalText parses an octal mode.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("%q is not an octal permission such as \"0660\"", string(b))
	}
	*m = FileMode(v)
	return nil
}

func (m FileMode) String() string { return fmt.Sprintf("%#o", uint32(m)) }

// Listen is a parsed listen address: "inet:host:port" or "unix:/path".
type Listen struct {
	Network string // "tcp" or "unix"
	Address string // host:port or path
}

func (l Listen) String() string {
	if l.Network == "unix" {
		return "unix:" + l.Address
	}
	return "inet:" + l.Address
}

// IsLoopback reports whether an inet listener binds only to loopback.
// Unix sockets are local by nature.
func (l Listen) IsLoopback() bool {
	if l.Network == "unix" {
		return true
	}
	host, _, _ := net.SplitHostPort(l.Address)
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ParseListen parses the listen syntax Postfix uses for milters.
func ParseListen(s string) (Listen, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Listen{}, fmt.Errorf("%q is not \"inet:host:port\" or \"unix:/path\"", s)
	}
	switch kind {
	case "unix", "local":
		if !filepath.IsAbs(rest) {
			return Listen{}, fmt.Errorf("%q: a unix socket needs an absolute path", s)
		}
		return Listen{Network: "unix", Address: filepath.Clean(rest)}, nil
	case "inet", "inet4", "inet6":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return Listen{}, fmt.Errorf("%q: %v (write \"inet:127.0.0.1:8025\" or \"inet:[::1]:8025\")", s, err)
		}
		if host == "" {
			return Listen{}, fmt.Errorf("%q: name the address to bind; all addresses would make it reachable from the network", s)
		}
		if host != "localhost" {
			if _, err := netip.ParseAddr(host); err != nil {
				return Listen{}, fmt.Errorf("%q: %q is not an IP address", s, host)
			}
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return Listen{}, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
		}
		return Listen{Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
	}
	return Listen{}, fmt.Errorf("%q: unknown kind %q (use inet: or unix:)", s, kind)
}

// NetworkSpec is an allowed client network ("192.0.2.0/24" or an address).
type NetworkSpec = netip.Prefix

func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a network such as \"192.0.2.0/24\"", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func joinDir(file, name string) string { return filepath.Join(filepath.Dir(file), name) }

// ClientAllowed applies the allow-list rule of the listeners: a unix
// socket is guarded by its file mode; without allowed_networks only
// loopback clients may connect; otherwise the client must be in one of
// them.
func ClientAllowed(addr net.Addr, nets []NetworkSpec) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return true
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	if len(nets) == 0 {
		return ip.IsLoopback()
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
