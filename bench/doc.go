//go:build bench

// Package bench measures restrictedmail side by side with Postfix and with
// the protocol floors, in one command:
//
//	make bench
//	# which is: go test -tags bench -run '^TestBenchmarks$' -count=1 -timeout 20m -v ./bench
//
// Every file is guarded by the "bench" build tag, so that `go test ./...`
// never runs it. It needs root and the tools of the end-to-end tests
// (apt-get install -y postfix swaks miltertest python3-dkim): it builds the
// daemon from the current tree, starts private Postfix instances on
// loopback (internal/postfixtest), capture sinks (internal/testsmtp and
// Postfix's smtp-sink), and issues its own tokens. Everything it starts is
// stopped when it ends. It prints one Markdown table and writes it, with the
// date, the machine and the targets met or missed, to BENCHMARKS.md at the
// root of the module. BENCH_QUICK=1 runs every scenario with small sizes and
// writes nothing (for working on the benchmark itself).
//
// The machine it runs on is typically a shared two-core box, where absolute
// figures move by tens of percent from one minute to the next. So every
// scenario runs its configurations interleaved, round by round (in a
// rotating order), and reports the ratio to its baseline for each round
// and the median of those ratios; the absolute columns are medians over
// the rounds.
//
// # Scenarios
//
//  1. Milter on ordinary mail: smtp-source (2,000 messages, 10 connections)
//     into Postfix, which relays to smtp-sink; messages per second from the
//     first connection to the last message at the sink. Five Postfix
//     instances differ only in smtpd_milters: restrictedmail's milter (the
//     real binary); go-milter's NoOpMilter with go-milter's default
//     negotiation (every event, every reply: the protocol floor of a milter
//     that looks at everything); two minimal milters that do nothing and
//     negotiate every event away but DATA (what any milter costs Postfix),
//     or but RCPT and DATA (the least a milter that judges recipients at
//     RCPT can ask for); and no milter (the limit). This is also the
//     benchmark of issue 4.
//  2. Milter verdict on restricted mail: go-milter's client plays Postfix
//     against the daemon's milter for 10 KB, 1 MB and 25 MB messages to a
//     restricted address whose token part comes last; the time from sending
//     end of message to the verdict (p50, p99 over all samples), against the
//     same exchange with the no-op milter (which answers at once).
//  3. Fan-out: one 50 KB message through the LMTP endpoint to a list of
//     1,000, 10,000 and 100,000 recipients; recipients per second from the
//     LMTP connection to the last copy at the sink. Baselines: Postfix
//     relaying the same message to the same recipients to the same sink
//     (from its "250 queued", so Postfix is not charged for receiving the
//     RCPTs), and relay.Client sending one copy per recipient over one
//     connection, as LEGO did.
//  4. Many small mailings: 1,000 messages, each with its own token, to a
//     list of 10 submitted to Postfix over 10 connections (milter, queue,
//     LMTP, fan-out); messages per second until the sink has every copy,
//     against the same messages expanded by Postfix itself (a
//     virtual_alias_maps list with the same 10 members).
//  5. Memory: the daemon's peak RSS (VmHWM) for a 50 MB message through the
//     milter and through the LMTP endpoint, each in a fresh daemon, against
//     an idle daemon; and for the 100,000 against the 1,000-recipient
//     fan-out (each fan-out of scenario 3 runs in a fresh daemon).
//  6. Issuing through the HTTP API: 8 clients, each on its own keep-alive
//     connection, issue 2,000 tokens per round through POST
//     /api/v1/lists/{address}/tokens of a daemon on SQLite; tokens per
//     second and the p50/p99 of one request, against the same issuing in
//     process through tokenops (the path of `token issue`) with 8
//     goroutines on a store of its own. Target: p99 under 20 ms.
//  7. The PostgreSQL store against SQLite, in the same run: a daemon on
//     each (PostgreSQL: a private cluster on loopback, internal/pgtest),
//     the milter's verdict on a 10 KB tokened message (p50/p99), and
//     tokened messages per second end to end through a Postfix of each
//     (as scenario 4). Targets: p99 under 2 ms; end to end at least 0.8×
//     SQLite's.
package bench
