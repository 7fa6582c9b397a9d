package postfixtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// QueueEntry is one queued message, as "postqueue -j" reports it.
type QueueEntry struct {
	QueueID string
	// QueueName is "incoming", "active", "deferred", "hold" or "maildrop".
	QueueName    string
	Sender       string
	Recipients   []QueueRecipient
	ArrivalTime  time.Time
	MessageSize  int64
	ForcedExpire bool
}

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Address string
	// OrigAddress is the address before rewriting, when it differs.
	OrigAddress string
	// DelayReason is why the last delivery attempt failed, e.g.
	// "connect to 127.0.0.1[127.0.0.1]:8024: Connection refused"; empty
	// while the message has not been tried.
	DelayReason string
}

// queueJSON is the postqueue -j record (postqueue(1), "JSON OBJECT FORMAT").
type queueJSON struct {
	QueueName    string `json:"queue_name"`
	QueueID      string `json:"queue_id"`
	ArrivalTime  int64  `json:"arrival_time"`
	MessageSize  int64  `json:"message_size"`
	ForcedExpire bool   `json:"forced_expire"`
	Sender       string `json:"sender"`
	Recipients   []struct {
		Address     string `json:"address"`
		OrigAddress string `json:"orig_address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// Queue lists the queued messages (postqueue -j).
func (i *Instance) Queue(t testing.TB) []QueueEntry {
	t.Helper()
	q, err := i.queue()
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	return q
}

func (i *Instance) queue() ([]QueueEntry, error) {
	cmd := i.command(i.bin.postqueue, "-c", i.l.configDir, "-j")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("postqueue -j: %v: %s", err, stderr.Bytes())
	}
	return parseQueue(out)
}

// parseQueue parses postqueue -j output: one JSON object per line.
func parseQueue(out []byte) ([]QueueEntry, error) {
	var entries []QueueEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20) // a message with many recipients is one long line
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var j queueJSON
		if err := json.Unmarshal(line, &j); err != nil {
			return nil, fmt.Errorf("parsing postqueue -j line %q: %w", line, err)
		}
		e := QueueEntry{
			QueueID:      j.QueueID,
			QueueName:    j.QueueName,
			Sender:       j.Sender,
			ArrivalTime:  time.Unix(j.ArrivalTime, 0),
			MessageSize:  j.MessageSize,
			ForcedExpire: j.ForcedExpire,
		}
		for _, r := range j.Recipients {
			e.Recipients = append(e.Recipients, QueueRecipient(r))
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading postqueue -j output: %w", err)
	}
	return entries, nil
}

// Flush asks Postfix to deliver all deferred mail now (postqueue -f), as if
// every backoff had expired. It returns before delivery: wait for the result.
func (i *Instance) Flush(t testing.TB) {
	t.Helper()
	if out, err := i.run(i.bin.postqueue, "-c", i.l.configDir, "-f"); err != nil {
		t.Fatalf("postfixtest: postqueue -f: %v: %s", err, out)
	}
}

// pollInterval paces the waits below. They poll because the state lives in
// external processes that cannot notify the test.
const pollInterval = 25 * time.Millisecond

// WaitQueueEmpty waits until the queue is empty, or fails t with the queue
// and the end of the maillog.
func (i *Instance) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	i.WaitQueue(t, timeout, func(q []QueueEntry) bool { return len(q) == 0 })
}

// WaitQueue waits until cond holds for the queue and returns that queue, or
// fails t with the last queue seen and the end of the maillog.
func (i *Instance) WaitQueue(t testing.TB, timeout time.Duration, cond func([]QueueEntry) bool) []QueueEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		q := i.Queue(t)
		if cond(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: queue condition not met within %v; queue:\n%s%s", timeout, FormatQueue(q), i.logTail(40))
		}
		<-tick.C
	}
}

// FormatQueue renders a queue listing for failure messages.
func FormatQueue(q []QueueEntry) string {
	if len(q) == 0 {
		return "  (empty)\n"
	}
	var b strings.Builder
	for _, e := range q {
		fmt.Fprintf(&b, "  %s %s from <%s>, %d bytes\n", e.QueueID, e.QueueName, e.Sender, e.MessageSize)
		for _, r := range e.Recipients {
			fmt.Fprintf(&b, "    to <%s>", r.Address)
			if r.DelayReason != "" {
				fmt.Fprintf(&b, ": %s", r.DelayReason)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Postcat returns the queue file of a queued message (postcat -q): its
// envelope records, headers and body as Postfix stored them.
func (i *Instance) Postcat(t testing.TB, queueID string) string {
	t.Helper()
	cmd := i.command(i.bin.postcat, "-c", i.l.configDir, "-q", queueID)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("postfixtest: postcat -q %s: %v: %s", queueID, err, stderr.Bytes())
	}
	return string(out)
}

// Log returns the whole maillog ("" before Postfix has written any).
func (i *Instance) Log() string {
	b, err := os.ReadFile(i.l.maillog)
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog waits until the maillog contains substr, or fails t with its end.
// postlogd writes asynchronously, so a log line may trail the event.
func (i *Instance) WaitLog(t testing.TB, timeout time.Duration, substr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !strings.Contains(i.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: maillog has no %q after %v%s", substr, timeout, i.logTail(40))
		}
		<-tick.C
	}
}

// logTail is the last n lines of the maillog, for failure messages.
func (i *Instance) logTail(n int) string {
	lines := strings.SplitAfter(i.Log(), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("\nmaillog (%s, last %d lines):\n%s", i.l.maillog, len(lines), strings.Join(lines, ""))
}
