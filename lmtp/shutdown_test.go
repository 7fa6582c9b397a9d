package lmtp

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestShutdownNeverPanics is the regression test of a crash seen in the
// end-to-end tests: Shutdown ran go-smtp's Shutdown in a goroutine beside
// its Close, both closed the same channel, and `serve` died with "close of
// closed channel" (exit status 2) on SIGTERM. It also checks that an idle
// connection (Postfix caches LMTP connections) is closed by Shutdown and
// that Serve returns nil.
func TestShutdownNeverPanics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 40 {
		srv := New(e.options(slog.New(slog.DiscardHandler)))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		var idle net.Conn
		if i%2 == 0 {
			// An idle client, greeted and waiting.
			if idle, err = net.Dial("tcp", ln.Addr().String()); err != nil {
				t.Fatal(err)
			}
			if greeting, err := bufio.NewReader(idle).ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "220 ") {
				t.Fatalf("greeting %q, %v", greeting, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after Shutdown")
		}
		if idle != nil {
			idle.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := idle.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Error("Shutdown left an idle connection open")
					}
					break
				}
			}
			idle.Close()
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Error("the listener still accepts after Shutdown")
		}
	}
}

// TestShutdownBeforeServe: a Shutdown that comes before Serve (a start
// aborted early) makes Serve return at once instead of serving forever.
func TestShutdownBeforeServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := New(e.options(nil))
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve after Shutdown did not return")
	}
}
