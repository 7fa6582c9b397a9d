package rewrite

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// A header field shows its reader the text of its RFC 2047 encoded words
// ("=?utf-8?b?…?=", "=?iso-8859-1?q?…?="), decoded in their charset and
// joined where words follow each other (RFC 2047 §6.2), and the values of
// its RFC 2231 parameters (filename*0*=…). The scrub reads that view; a
// field in which it finds nothing keeps its bytes (DKIM, and the promise
// that kept fields are untouched); in a field in which it finds a token,
// only the runs of words that the match touches are written anew (UTF-8,
// B encoding: safe in a phrase, a comment or unstructured text), and the
// clear text around them keeps its bytes.

// segment is a piece of a field's value: clear text, or a run of encoded
// words separated only by white space (which the reader does not see).
type segment struct {
	start, end int // in the field
	run        bool
	text       []byte // what the reader sees of a run: decoded, UTF-8 if label is
	label      string // charset to write a rewritten run in
	vstart     int    // where the segment starts in the view
}

// scrubWords scrubs the decoded view of one raw header field, returning
// field itself when no encoded word holds (part of) a match.
func scrubWords(m *matcher, field []byte) []byte {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 || !bytes.Contains(field[colon:], []byte("=?")) {
		return field
	}
	segs := segments(field, colon+1)
	if segs == nil {
		return field
	}
	var view []byte
	for i := range segs {
		s := &segs[i]
		s.vstart = len(view)
		if s.run {
			view = append(view, s.text...)
		} else {
			view = append(view, field[s.start:s.end]...)
		}
	}
	spans := append([]span(nil), m.find(view)...)
	touched := false
	for _, sp := range spans {
		for _, s := range segs {
			if s.run && sp.start < s.vstart+len(s.text) && sp.end > s.vstart {
				touched = true
			}
		}
	}
	if !touched {
		return field // clear text only: the byte-level scrub sees it as well
	}
	out := append([]byte(nil), field[:segs[0].start]...)
	for _, s := range segs {
		if !s.run {
			out = cutSpans(out, field[s.start:s.end], spans, s.vstart)
			continue
		}
		text := cutSpans(nil, s.text, spans, s.vstart)
		if bytes.Equal(text, s.text) {
			out = append(out, field[s.start:s.end]...)
			continue
		}
		out = append(out, encodeWords(s.label, text)...)
	}
	return append(out, field[segs[len(segs)-1].end:]...)
}

// cutSpans appends b, a piece of a view starting at offset off, to dst with
// what the view's spans cover of it removed: the marker stands where a
// span starts, and a fold it covered stays after it (see replaceSpans).
func cutSpans(dst, b []byte, spans []span, off int) []byte {
	prev := 0
	for _, sp := range spans {
		s, e := sp.start-off, sp.end-off
		if e <= 0 || s >= len(b) {
			continue
		}
		s, e = max(s, 0), min(e, len(b))
		dst = append(dst, b[prev:s]...)
		if sp.start-off >= 0 {
			dst = append(dst, removedMarker...)
		}
		if f := firstFold(b[s:e]); f != nil && e < len(b) && b[e] != '\r' && b[e] != '\n' {
			dst = append(dst, f...)
		}
		prev = e
	}
	return append(dst, b[prev:]...)
}

// segments splits the value of field (from off) into clear text and runs
// of encoded words; nil when there is no encoded word.
func segments(field []byte, off int) []segment {
	var segs []segment
	clear := off
	for i := off; i < len(field); {
		if field[i] != '=' || i+1 >= len(field) || field[i+1] != '?' {
			i++
			continue
		}
		w, ok := parseWord(field, i)
		if !ok {
			i += 2
			continue
		}
		// Words separated by white space only (or by nothing) are one
		// run: the reader sees their texts joined.
		run := []word{w}
		end := w.end
		for {
			next, ok := parseWord(field, skipSpace(field, end))
			if !ok {
				break
			}
			run = append(run, next)
			end = next.end
		}
		if clear < i {
			segs = append(segs, segment{start: clear, end: i})
		}
		text, label := decodeRun(run)
		segs = append(segs, segment{start: i, end: end, run: true, text: text, label: label})
		clear, i = end, end
	}
	if len(segs) == 0 {
		return nil
	}
	segs = append(segs, segment{start: clear, end: len(field)})
	return segs
}

// skipSpace skips linear white space: blanks, and line breaks followed by
// a blank (folds).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch {
		case b[i] == ' ' || b[i] == '\t':
			i++
		case b[i] == '\r' && i+2 < len(b) && b[i+1] == '\n' && (b[i+2] == ' ' || b[i+2] == '\t'):
			i += 3
		case b[i] == '\n' && i+1 < len(b) && (b[i+1] == ' ' || b[i+1] == '\t'):
			i += 2
		default:
			return i
		}
	}
	return i
}

// word is one encoded word: its place in the field, its charset, and its
// text with the transfer encoding (B or Q) undone.
type word struct {
	start, end int
	charset    string
	raw        []byte
}

// parseWord reads the encoded word "=?charset?B|Q?text?=" at b[i] (RFC
// 2047 §2), reading through Postfix's folds (CRLF SP inserted into a long
// line, even inside a word). A language suffix (RFC 2231 §5) is dropped.
// No length limit (readers have none): the header's size bounds it, and
// a word ends at the first blank or "?", so the parse stays linear.
func parseWord(b []byte, i int) (word, bool) {
	var w word
	if i+1 >= len(b) || b[i] != '=' || b[i+1] != '?' {
		return w, false
	}
	var parts [3][]byte // charset, encoding, text
	k := i + 2
	for p := 0; p < 3; k++ {
		if k >= len(b) {
			return w, false
		}
		if n := foldAt(b, k); n > 0 {
			k += n - 1
			continue
		}
		c := b[k]
		switch {
		case c == '?':
			if p == 2 {
				if k+1 >= len(b) || b[k+1] != '=' {
					return w, false
				}
				k++
			}
			p++
		case c <= ' ' || c >= 0x7f:
			return w, false
		default:
			parts[p] = append(parts[p], c)
		}
	}
	cs, _, _ := strings.Cut(string(parts[0]), "*")
	if cs == "" || len(parts[1]) != 1 {
		return w, false
	}
	switch parts[1][0] {
	case 'b', 'B':
		w.raw = decodeBase64Lenient(parts[2])
	case 'q', 'Q':
		w.raw = decodeQ(parts[2])
	default:
		return w, false
	}
	w.start, w.end, w.charset = i, k, cs
	return w, true
}

// decodeRun returns what a reader sees of a run of words: the bytes of
// consecutive words of one charset joined (a character may be split
// between them) and converted to UTF-8 by go-message's charset package. A
// charset it does not know leaves the bytes as they are, and the run is
// then written back in that charset: tokens are ASCII.
func decodeRun(run []word) ([]byte, string) {
	var text []byte
	label := "utf-8"
	for i := 0; i < len(run); {
		j := i + 1
		raw := append([]byte(nil), run[i].raw...)
		for j < len(run) && strings.EqualFold(run[j].charset, run[i].charset) {
			raw = append(raw, run[j].raw...)
			j++
		}
		if dec, ok := toUTF8(run[i].charset, raw); ok {
			text = append(text, dec...)
		} else {
			text = append(text, raw...)
			label = run[i].charset
		}
		i = j
	}
	return text, label
}

func toUTF8(cs string, b []byte) ([]byte, bool) {
	switch strings.ToLower(cs) {
	case "utf-8", "us-ascii":
		return b, true
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return nil, false
	}
	out, err := io.ReadAll(r)
	return out, err == nil
}

// encodeWords writes text as B-encoded words in charset label, each at
// most 75 characters (RFC 2047 §2) and cut between characters when label
// is UTF-8, folded onto lines of their own.
func encodeWords(label string, text []byte) []byte {
	if len(text) == 0 {
		return nil
	}
	head := "=?" + label + "?b?"
	room := max(3, (75-len(head)-2)/4*3)
	var out []byte
	for len(text) > 0 {
		n := min(room, len(text))
		if strings.EqualFold(label, "utf-8") {
			for n < len(text) && n > 1 && !utf8.RuneStart(text[n]) {
				n--
			}
		}
		if len(out) > 0 {
			out = append(out, "\r\n "...)
		}
		out = append(out, head...)
		out = base64.StdEncoding.AppendEncode(out, text[:n])
		out = append(out, "?="...)
		text = text[n:]
	}
	return out
}

// decodeQ undoes RFC 2047's Q encoding: "_" is a space, "=XX" a byte; an
// "=" that starts no escape stands for itself, as lenient readers show it.
func decodeQ(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]):
			out = append(out, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

// scrubParams scrubs the RFC 2231 view of a Content-Type or
// Content-Disposition field: parameters split into numbered sections
// (name*0=…; name*1=…) or percent-encoded (name*=utf-8'en'…) show the reader
// their joined, decoded value. A field whose view holds a match is
// written anew by mime.FormatMediaType; any other keeps its bytes.
func scrubParams(m *matcher, field []byte) []byte {
	colon := bytes.IndexByte(field, ':')
	if colon < 0 || !bytes.Contains(field[colon:], []byte("*")) {
		return field
	}
	name := strings.TrimSpace(string(field[:colon]))
	if !strings.EqualFold(name, "Content-Type") && !strings.EqualFold(name, "Content-Disposition") {
		return field
	}
	value := strings.TrimRight(string(unfoldRFC5322(field[colon+1:])), "\r\n")
	mt, params, err := mime.ParseMediaType(value)
	if err != nil || len(params) == 0 {
		return field
	}
	changed := false
	for k, v := range params {
		if s := m.scrubBytes([]byte(v)); string(s) != v {
			params[k] = string(s)
			changed = true
		}
	}
	if !changed {
		return field
	}
	f := mime.FormatMediaType(mt, params)
	if f == "" {
		return field
	}
	eol := "\r\n"
	if !bytes.HasSuffix(field, []byte("\r\n")) {
		eol = "\n"
	}
	return []byte(name + ": " + f + eol)
}

// unfoldRFC5322 removes the line breaks of folds, keeping the blank that
// follows each (RFC 5322 §2.2.3).
func unfoldRFC5322(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' && i+2 < len(b) {
			i++
			continue
		}
		if b[i] == '\n' && i+1 < len(b) {
			continue
		}
		out = append(out, b[i])
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
