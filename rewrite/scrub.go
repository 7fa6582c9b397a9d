package rewrite

import (
	"bytes"
	"io"
)

// The token carriers are removed by token.Finder; what a sender pasted
// elsewhere is not a carrier but must not reach the list either: the token
// file's line copied into the text or the HTML of the message ("my token
// is RMTOKENabc…"), the token alone (a subaddress written in the text).
// The scrub replaces, in every view of the copy that a reader sees — the
// bytes as they travel, header fields with their RFC 2047 words decoded
// (words.go), text parts with their transfer encoding and, where it is not
// ASCII-compatible, their charset decoded (parts.go):
//
//   - the prefix followed by token characters (any token's file line, also
//     one inside a forwarded message), and
//   - the token used, in any case,
//
// by the marker below.
//
// Postfix's SMTP and LMTP clients break a line longer than their
// line_length_limit (998) by inserting CRLF and one space, wherever the
// limit falls — inside a token too. The rules read through such folds:
//
//   - the token rule through every CRLF SP (or LF SP), whatever the
//     length of the line before it: the limit is a setting (990 in older
//     Postfix), and a fold can cause no false match (the token is 160
//     random bits);
//   - the prefix rule only through a fold after a line of at least
//     foldLineMin bytes, the lines Postfix breaks. Anywhere else a fold is
//     an indented line, and "RMTOKEN" at the end of a line followed by an
//     indented word would lose that word.
const removedMarker = "[token removed]"

// foldLineMin is the shortest line after which a CRLF SP counts as a fold
// for the prefix rule: below Postfix's 998 (and the 990 of old versions),
// above any line a person types.
const foldLineMin = 900

// span is a match in a byte slice, [start, end).
type span struct{ start, end int }

// matcher finds what the scrub replaces. Its buffers are reused from one
// call to the next.
type matcher struct {
	prefix []byte
	token  []byte // lower case; nil when there is none
	// carry is how much of its line precedes the input (it starts inside
	// an overlong line), for the length of the line before a fold.
	carry int
	view  []byte // the input without folds: the input itself, or vbuf
	vbuf  []byte
	idx   []int // view index → input index, when there were folds
	spans []span
}

func newMatcher(prefix, tok string) matcher {
	m := matcher{prefix: []byte(prefix)}
	if tok != "" {
		m.token = []byte(tok)
		lowerASCII(m.token)
	}
	return m
}

// foldAt returns the length of a fold (CRLF SP or LF SP) at b[i], or 0.
func foldAt(b []byte, i int) int {
	switch {
	case b[i] == '\r' && i+2 < len(b) && b[i+1] == '\n' && b[i+2] == ' ':
		return 3
	case b[i] == '\n' && i+1 < len(b) && b[i+1] == ' ':
		return 2
	}
	return 0
}

// unfold sets m.view to b without its folds — all of them, or with
// longOnly those after a line of foldLineMin bytes or more — and m.idx to
// the position in b of each byte of the view (empty when nothing was taken
// out: the view is b).
func (m *matcher) unfold(b []byte, longOnly bool) {
	m.idx = m.idx[:0]
	if !bytes.Contains(b, []byte("\n ")) {
		m.view = b
		return
	}
	// Never append to view: it may be a caller's slice.
	m.vbuf = m.vbuf[:0]
	lineStart := -m.carry
	for i := 0; i < len(b); i++ {
		if n := foldAt(b, i); n > 0 && (!longOnly || i-lineStart >= foldLineMin) {
			lineStart = i + n - 1 // the blank begins the next line as sent
			i += n - 1
			continue
		}
		if b[i] == '\n' {
			lineStart = i + 1
		}
		m.vbuf = append(m.vbuf, b[i])
		m.idx = append(m.idx, i)
	}
	m.view = m.vbuf
}

// pos maps a view index to an index in the input.
func (m *matcher) pos(i int) int {
	if len(m.idx) == 0 {
		return i
	}
	if i >= len(m.idx) {
		return m.idx[len(m.idx)-1] + 1
	}
	return m.idx[i]
}

// find returns the matches in b, in order and not overlapping, in b's
// indexes. Each starts and ends on a byte of the view (never inside a
// fold).
func (m *matcher) find(b []byte) []span {
	m.spans = m.spans[:0]
	folds := bytes.Contains(b, []byte("\n "))
	m.unfold(b, true)
	v := m.view
	if len(m.prefix) > 0 && bytes.Contains(v, m.prefix) {
		for from := 0; ; {
			i := bytes.Index(v[from:], m.prefix)
			if i < 0 {
				break
			}
			i += from
			j := i + len(m.prefix)
			for j < len(v) && isTokenByte(v[j]) {
				j++
			}
			if j > i+len(m.prefix) {
				m.spans = append(m.spans, span{m.pos(i), m.pos(j-1) + 1})
			}
			from = j
		}
	}
	if m.token != nil {
		if folds {
			m.unfold(b, false)
			v = m.view
		}
		n := len(m.spans)
		for from := 0; ; {
			i := indexFold(v[from:], m.token)
			if i < 0 {
				break
			}
			i += from
			m.spans = append(m.spans, span{m.pos(i), m.pos(i+len(m.token)-1) + 1})
			from = i + len(m.token)
		}
		if n > 0 && len(m.spans) > n {
			m.spans = mergeSpans(m.spans)
		}
	}
	return m.spans
}

// mergeSpans sorts spans by start and joins those that overlap.
func mergeSpans(ss []span) []span {
	// Few spans: insertion sort keeps this allocation-free.
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j].start < ss[j-1].start; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
	out := ss[:1]
	for _, s := range ss[1:] {
		last := &out[len(out)-1]
		if s.start < last.end {
			last.end = max(last.end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// replaceSpans writes b with each span replaced by the marker, into dst.
func replaceSpans(dst, b []byte, spans []span) []byte {
	prev := 0
	for _, s := range spans {
		dst = append(dst, b[prev:s.start]...)
		dst = appendMarker(dst, b, s)
		prev = s.end
	}
	return append(dst, b[prev:]...)
}

// appendMarker writes the marker for span s of b. A span that a fold cuts
// keeps one fold, before or after the marker, so that no line grows longer
// than it was where the marker fits (a token is 32 characters, the marker
// 15): a line over the limit would be folded again on the way out and
// break the DKIM signature made over it. A fold never leaves a line of
// white space alone (in a header that would end the header).
func appendMarker(dst, b []byte, s span) []byte {
	first, last := -1, -1 // start of the first fold, end of the last
	var fold []byte
	for i := s.start; i < s.end; i++ {
		if n := foldAt(b, i); n > 0 {
			if first < 0 {
				first, fold = i, b[i:i+n]
			}
			last = i + n
			i += n - 1
		}
	}
	if fold == nil {
		return append(dst, removedMarker...)
	}
	head, tail, m := first-s.start, s.end-last, len(removedMarker)
	after := s.end < len(b) && b[s.end] != '\r' && b[s.end] != '\n'
	before := false
	for i := s.start - 1; i >= 0 && b[i] != '\n'; i-- {
		if b[i] != ' ' && b[i] != '\t' && b[i] != '\r' {
			before = true
			break
		}
	}
	markerFirst := false
	switch {
	case after && head >= m:
		markerFirst = true
	case before && tail >= m:
	case after && before:
		markerFirst = head >= tail
	case after:
		markerFirst = true
	case !before:
		return append(dst, removedMarker...)
	}
	if markerFirst {
		return append(append(dst, removedMarker...), fold...)
	}
	return append(append(dst, fold...), removedMarker...)
}

func firstFold(b []byte) []byte {
	for i := range b {
		if n := foldAt(b, i); n > 0 {
			return b[i : i+n]
		}
	}
	return nil
}

// scrubBytes returns b scrubbed, b itself when nothing matched.
func (m *matcher) scrubBytes(b []byte) []byte {
	spans := m.find(b)
	if len(spans) == 0 {
		return b
	}
	return replaceSpans(nil, b, spans)
}

// scrubber is an io.Writer that applies the rules to a stream. It
// gathers whole lines and scrubs them in batches, each cut after a line
// that no fold can continue into a match; pending bytes longer than
// scrubLineMax (one overlong line, or lines joined by folds) are written
// in pieces cut where no match can straddle the cut.
type scrubber struct {
	w       io.Writer
	m       matcher
	buf     []byte // pending bytes: whole lines, then maybe an unfinished one
	settled int    // buf's line ends before this are known to be no cut
	out     []byte // scratch
	changed bool   // something was replaced
}

const (
	scrubBatch   = 32 << 10 // whole lines gathered before they are scrubbed and written
	scrubLineMax = 64 << 10 // pending bytes beyond which a line is cut
)

func newScrubber(w io.Writer, prefix, tok string) *scrubber {
	return &scrubber{w: w, m: newMatcher(prefix, tok)}
}

func (s *scrubber) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), scrubBatch)
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) >= scrubBatch {
			if err := s.emit(s.lineCut()); err != nil {
				return 0, err
			}
		}
		for len(s.buf) > scrubLineMax {
			c := s.safeCut(s.buf)
			if c == 0 {
				break
			}
			if err := s.emit(c); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// lineCut returns the end of the last whole line of the pending bytes
// after which no fold can continue a match: a line that cannot continue
// one (mayContinue), or one followed by a line that does not start with a
// blank. 0 when there is none.
func (s *scrubber) lineCut() int {
	b := s.buf
	for e := len(b); e > s.settled; {
		k := bytes.LastIndexByte(b[s.settled:e], '\n')
		if k < 0 {
			break
		}
		k += s.settled
		if end := k + 1; end < len(b) && b[end] != ' ' || !s.mayContinue(b[:end]) {
			return end
		}
		e = k
	}
	// None: the line ends seen are no cut, but for a last one, which the
	// next byte may still make one. Keeps the scan linear.
	s.settled = len(b)
	if len(b) > 0 && b[len(b)-1] == '\n' {
		s.settled--
	}
	return 0
}

// mayContinue reports whether a fold after the line at the end of b could
// continue a match: the line ends (before its line break) in a token
// character or in a character of the prefix.
func (s *scrubber) mayContinue(b []byte) bool {
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) == 0 {
		return false
	}
	c := b[len(b)-1]
	return isTokenByte(c) || bytes.IndexByte(s.m.prefix, c) >= 0
}

// flush writes what is left; call it at the end of the stream.
func (s *scrubber) flush() error { return s.emit(len(s.buf)) }

// emit scrubs the first n pending bytes and writes them.
func (s *scrubber) emit(n int) error {
	if n == 0 {
		return nil
	}
	chunk := s.buf[:n]
	if spans := s.m.find(chunk); len(spans) > 0 {
		s.changed = true
		s.out = replaceSpans(s.out[:0], chunk, spans)
		chunk = s.out
	}
	if _, err := s.w.Write(chunk); err != nil {
		return err
	}
	// What stays starts inside a line when the cut was: count the bytes
	// of that line written so far.
	if k := bytes.LastIndexByte(s.buf[:n], '\n'); k >= 0 {
		s.m.carry = n - k - 1
	} else {
		s.m.carry += n
	}
	s.buf = append(s.buf[:0], s.buf[n:]...)
	s.settled = max(0, s.settled-n)
	return nil
}

// safeCut returns where b may be cut: before the run of token characters
// that reaches its end (folds inside the run do not end it), with room for
// a prefix, and never inside a run. One run longer than b — far longer than
// any token, whose matches of the token rule are still kept whole — is cut
// before its last bytes.
func (s *scrubber) safeCut(b []byte) int {
	m := &s.m
	m.unfold(b, false)
	v := m.view
	n := len(v)
	for n > 0 && isTokenByte(v[n-1]) {
		n--
	}
	n = max(0, n-len(m.prefix))
	for n > 0 && n < len(v) && isTokenByte(v[n-1]) && isTokenByte(v[n]) {
		n--
	}
	if n == 0 {
		n = len(v) - max(len(m.token), len(m.prefix))
		if m.token != nil && n > len(m.token) {
			if i := indexFold(v[n-len(m.token):], m.token); i >= 0 && i < len(m.token) {
				n -= len(m.token) - i // keep a token that straddles the cut whole
			}
		}
		if n <= 0 {
			return 0
		}
	}
	if n >= len(v) {
		return len(b)
	}
	return m.pos(n)
}

// indexFold is bytes.Index for a lower-case ASCII needle, ignoring the
// case of ASCII letters in s, without copying s. The next place of each
// case of the first byte is remembered, so that the search stays linear.
func indexFold(s, low []byte) int {
	if len(low) == 0 || len(s) < len(low) {
		return -1
	}
	last := len(s) - len(low) // the last place a match can start
	c0, c1 := low[0], low[0]
	if 'a' <= c0 && c0 <= 'z' {
		c1 = c0 - 'a' + 'A'
	}
	next := func(c byte, from int) int {
		if j := bytes.IndexByte(s[from:last+1], c); j >= 0 {
			return from + j
		}
		return len(s)
	}
	n0, n1 := next(c0, 0), len(s)
	if c1 != c0 {
		n1 = next(c1, 0)
	}
	for {
		i := min(n0, n1)
		if i > last {
			return -1
		}
		if equalFoldASCII(s[i+1:i+len(low)], low[1:]) {
			return i
		}
		if i == n0 {
			n0 = next(c0, i+1)
		}
		if i == n1 && c1 != c0 {
			n1 = next(c1, i+1)
		}
	}
}

func equalFoldASCII(s, low []byte) bool {
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != low[i] {
			return false
		}
	}
	return true
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}
