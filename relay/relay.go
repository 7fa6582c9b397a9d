// Package relay sends the redistributed copies of a message through the
// outbound SMTP relay. Send splits the recipients into transactions of at
// most relay.max_recipients, sends them over at most relay.connections
// parallel connections, each reused for several transactions, and reports
// for every recipient whether the relay took the message, refused it for
// good, or failed temporarily, so that the LMTP endpoint can record the
// delivered and failed recipients and have Postfix retry the rest.
//
// Failures are classified in one place (replyError): only a 5xx reply to
// RCPT or DATA is permanent. A relay that cannot be reached, refuses our
// credentials or our bounce address, times out or drops the connection
// makes recipients fail temporarily: mail is retried, never lost.
//
// A circuit breaker keeps a relay that is down from costing one connection
// attempt per transaction. The first worker tries to connect before the
// others do; if it fails, every transaction fails at once with its error.
// A worker that cannot connect later (a relay limiting parallel
// connections) leaves the work to the others; when the last worker cannot
// connect, or has lost maxLostInARow transactions in a row, the remaining
// transactions fail at once. A connection lost in the middle of a
// transaction costs that transaction only: the worker reconnects. A
// transaction that fails on a reused connection before its message was
// sent (a relay closing idle or long-used connections) is sent once more
// on a new connection; after the final dot nothing is ever sent twice by
// this package.
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Options configure a Client. The daemon maps [relay] onto them.
type Options struct {
	Address        string // host:port
	TLS            string // none | starttls | tls
	CAFile         string // "": the system's roots
	Username       string // "": no AUTH
	Password       string
	HeloName       string // "": DefaultHeloName
	MaxRecipients  int    // per transaction; 0: DefaultMaxRecipients
	Connections    int    // parallel connections; 0: DefaultConnections
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
}

// The defaults of zero Options fields; the configuration's are the same
// (config.Default), and a test of the daemon's wiring checks that they stay so.
const (
	DefaultMaxRecipients  = 50
	DefaultConnections    = 4
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultHeloName       = "localhost.localdomain"
)

// Client sends messages through the relay of one configuration. It holds
// no connection between Sends and is safe for concurrent use.
type Client struct {
	cfg    Options
	log    *slog.Logger
	tls    *tls.Config // nil for tls = "none"
	dialer net.Dialer
	obs    Observer // nil: none (see WithObserver)
	onIdle func()   // tests: a worker found the queue empty while others hold batches (under run.mu)
}

// Result is the outcome for one recipient. Err is nil when the relay
// accepted the message for that recipient.
type Result struct {
	Rcpt string
	Err  *Error
}

// New builds the TLS config (system roots, or CAFile), the SASL setup and
// the dialer. Zero limits and timeouts take the package's defaults.
func New(cfg Options, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fill(&cfg.MaxRecipients, DefaultMaxRecipients)
	fill(&cfg.Connections, DefaultConnections)
	fill(&cfg.ConnectTimeout, DefaultConnectTimeout)
	fill(&cfg.CommandTimeout, DefaultCommandTimeout)
	fill(&cfg.HeloName, DefaultHeloName)
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("relay address: %w", err)
	}
	c := &Client{cfg: cfg, log: logger.With("relay", cfg.Address),
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout}}
	switch cfg.TLS {
	case "none":
	case "starttls", "tls":
		// Verification stays on; the name checked is the relay's, as
		// configured (an IP address is checked against IP SANs).
		c.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading the relay CA file: %w", err)
			}
			c.tls.RootCAs = x509.NewCertPool()
			if !c.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("relay CA file %s holds no PEM certificate", cfg.CAFile)
			}
		}
	default:
		return nil, fmt.Errorf("relay tls %q is none of none, starttls, tls", cfg.TLS)
	}
	return c, nil
}

func fill[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Send delivers one message to rcpts with envelope sender from, in
// transactions of at most cfg.MaxRecipients recipients over at most
// cfg.Connections parallel connections. body returns a fresh reader of the
// complete message (it is called once per transaction, possibly
// concurrently). report is called after each transaction — never
// concurrently — with the results of exactly that transaction's
// recipients; every recipient of rcpts appears in exactly one report call,
// also when ctx is cancelled or the relay is unreachable (then as temporary
// failures). Send returns when every recipient has been reported.
func (c *Client) Send(ctx context.Context, from string, rcpts []string, body func() io.Reader, report func([]Result)) {
	r := &run{cl: c, ctx: ctx, from: from, body: body, report: report, probed: make(chan struct{})}
	r.changed.L = &r.mu
	for b := range slices.Chunk(rcpts, c.cfg.MaxRecipients) {
		r.queue = append(r.queue, &batch{rcpts: b})
	}
	r.live = min(c.cfg.Connections, len(r.queue))
	var wg sync.WaitGroup
	for id := range r.live {
		wg.Go(func() { r.work(id) })
	}
	wg.Wait()
}
