// Package guard slows down the guessing of posting tokens. It counts the
// invalid tokens that each key — an SMTP client's address, an envelope
// sender — presents within a window; a key that reaches the limit is
// blocked for a while, and the adapters answer its further attempts with a
// temporary failure (450 4.7.1) before looking any token up.
//
// A 160-bit token cannot be guessed in practice; the guard is there so that
// a client trying anyway is told to go away cheaply, does not cost a store
// lookup per guess, and shows up in the logs. It must itself be cheap to
// keep: a hostile client can invent a new envelope sender for every
// message, so the number of keys held is bounded (New's maxKeys), and
// when it is full the key touched least recently is forgotten. A key under
// attack is touched at every attempt, so it is the last to be forgotten.
//
// Only unknown tokens count as guesses: a token the store knows (expired,
// used up, for another sender) was not guessed. Valid mail of other clients
// and senders is never affected.
package guard

import (
	"container/list"
	"strings"
	"sync"
	"time"
)

// Limits are the guard's settings ([tokens] guess_limit, guess_window,
// guess_block).
type Limits struct {
	// Limit is how many invalid tokens one key may present within Window;
	// reaching it blocks the key for Block. 0 disables the guard.
	Limit  int
	Window time.Duration
	Block  time.Duration
}

// Enabled reports whether the limits block anything.
func (l Limits) Enabled() bool { return l.Limit > 0 && l.Window > 0 && l.Block > 0 }

// DefaultMaxKeys bounds the memory of a guard: some 240 bytes per key
// (a sender of 50 characters), under 4 MiB when full.
const DefaultMaxKeys = 16384

// Guard counts invalid tokens per key. A nil *Guard is a disabled guard;
// every method is safe for concurrent use.
type Guard struct {
	mu      sync.Mutex
	limits  Limits
	maxKeys int
	keys    map[string]*list.Element // of *entry
	lru     list.List                // front: touched most recently
}

type entry struct {
	key          string
	windowStart  time.Time
	failures     int
	blockedUntil time.Time
}

// New returns a guard with limits, holding at most maxKeys keys
// (DefaultMaxKeys when maxKeys <= 0).
func New(limits Limits, maxKeys int) *Guard {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Guard{limits: limits, maxKeys: maxKeys, keys: map[string]*list.Element{}}
}

// SetLimits applies new limits (a configuration reload). Counts and blocks
// in progress are kept; a guard disabled by the new limits forgets them.
func (g *Guard) SetLimits(l Limits) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limits = l
	if !l.Enabled() {
		clear(g.keys)
		g.lru.Init()
	}
}

// ClientKey is the key of an SMTP client address ("" for none).
func ClientKey(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return ""
	}
	return "client " + addr
}

// SenderKey is the key of an envelope sender ("" for none, and for the
// null sender: bounces come from anybody's MTA, and blocking <> would
// block them all).
func SenderKey(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	if addr == "" {
		return ""
	}
	return "sender " + strings.ToLower(addr)
}

// PairKey is the key of one envelope sender from one SMTP client address
// ("" when either is missing). Counting guesses per pair, a forged sender
// blocks only the forger's own client for that sender, never the real
// sender writing from elsewhere.
func PairKey(client, sender string) string {
	c, s := ClientKey(client), SenderKey(sender)
	if c == "" || s == "" {
		return ""
	}
	return c + " " + s
}

// Blocked reports whether any of keys is blocked at now. Empty keys are
// ignored.
func (g *Guard) Blocked(now time.Time, keys ...string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.limits.Enabled() {
		return false
	}
	blocked := false
	for _, k := range keys {
		el := g.keys[k]
		if k == "" || el == nil {
			continue
		}
		// A client that keeps trying stays in memory.
		g.lru.MoveToFront(el)
		if e := el.Value.(*entry); now.Before(e.blockedUntil) {
			blocked = true
		}
	}
	return blocked
}

// Fail records one invalid token for each of keys at now and reports
// whether that blocked one of them. Empty keys are ignored.
func (g *Guard) Fail(now time.Time, keys ...string) (blockedNow bool) {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.limits
	if !l.Enabled() {
		return false
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := g.touch(k)
		if now.Before(e.blockedUntil) {
			continue // already blocked: the block is not prolonged
		}
		if e.failures == 0 || now.Sub(e.windowStart) >= l.Window {
			e.windowStart, e.failures = now, 0
		}
		e.failures++
		if e.failures >= l.Limit {
			e.blockedUntil = now.Add(l.Block)
			e.failures = 0
			blockedNow = true
		}
	}
	return blockedNow
}

// touch returns k's entry, creating it (and forgetting the least recently
// touched key when the guard is full); g.mu is held.
func (g *Guard) touch(k string) *entry {
	if el := g.keys[k]; el != nil {
		g.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	for len(g.keys) >= g.maxKeys {
		old := g.lru.Back()
		delete(g.keys, old.Value.(*entry).key)
		g.lru.Remove(old)
	}
	e := &entry{key: k}
	g.keys[k] = g.lru.PushFront(e)
	return e
}

// Len is the number of keys held.
func (g *Guard) Len() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.keys)
}
