package testsmtp

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Refuse must make connections fail with ECONNREFUSED yet keep the port for
// Resume: a socket that is bound but not listening does both. SO_REUSEPORT
// on every socket of the port lets it be bound before the listener closes,
// and the next listener be bound before it is released, so the port is
// never free. (Linux never hands out ephemeral ports shared that way.)

func listen(addr *net.TCPAddr) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	return lc.Listen(context.Background(), "tcp4", addr.String())
}

func reserve(addr *net.TCPAddr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err == nil {
		err = unix.Bind(fd, sa)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func release(fd int) { unix.Close(fd) }
