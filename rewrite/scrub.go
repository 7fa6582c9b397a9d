package rewrite

import (
	"bytes"
	"io"
)

// The token carriers are removed by token.Finder; what a sender pasted
// elsewhere is not a carrier but must not reach the list either: the token
// file's line copied into the text or the HTML of the message ("my token
// is RMTOKENabc…"), the token alone (a subaddress written in the text).
// The scrubber replaces, in every byte of the copy's body that is not
// encoded away from view:
//
//   - the prefix followed by token characters (any token's file line, also
//     one inside a forwarded message), and
//   - the token used, in any case,
//
// by the marker below. Base64 and quoted-printable text broken across soft
// line breaks are out of its sight; single-use tokens (the default) are
// spent by then anyway.
const removedMarker = "[token removed]"

// scrubber is an io.Writer that applies the two rules line by line; a line
// longer than scrubLineMax is written in pieces cut where no token can
// straddle the cut.
type scrubber struct {
	w      io.Writer
	prefix []byte
	token  []byte // lower case; nil when there is none
	line   []byte // the unfinished line
	low    []byte // scratch: the line in lower case
}

const scrubLineMax = 64 << 10

func newScrubber(w io.Writer, prefix, tok string) *scrubber {
	s := &scrubber{w: w, prefix: []byte(prefix)}
	if tok != "" {
		s.token = bytes.ToLower([]byte(tok))
	}
	return s
}

func (s *scrubber) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.line = append(s.line, p...)
			if len(s.line) > scrubLineMax {
				return 0, s.emit(false)
			}
			break
		}
		s.line = append(s.line, p[:i+1]...)
		p = p[i+1:]
		if err := s.emit(true); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush writes what is left; call it at the end of the body.
func (s *scrubber) flush() error { return s.emit(true) }

// emit scrubs the pending bytes and writes them: all of them at the end of
// a line; else (an overlong line) those before a cut that no token can
// straddle — before the run of token characters that reaches their end,
// with room for a prefix, and never inside a run — keeping the rest for
// the next write.
func (s *scrubber) emit(all bool) error {
	n := len(s.line)
	if !all {
		n = safeCut(s.line, len(s.prefix))
	}
	if n == 0 {
		return nil
	}
	if _, err := s.w.Write(s.scrub(s.line[:n])); err != nil {
		return err
	}
	s.line = append(s.line[:0], s.line[n:]...)
	return nil
}

func safeCut(b []byte, prefixLen int) int {
	n := len(b)
	for n > 0 && isTokenByte(b[n-1]) {
		n--
	}
	n = max(0, n-prefixLen)
	for n > 0 && isTokenByte(b[n-1]) && isTokenByte(b[n]) {
		n--
	}
	if n == 0 {
		// One run of token characters longer than scrubLineMax: far
		// longer than any token, whose occurrences are replaced.
		return len(b)
	}
	return n
}

// scrub applies the two rules to b, in place when nothing matches.
func (s *scrubber) scrub(b []byte) []byte {
	if len(s.prefix) > 0 && bytes.Contains(b, s.prefix) {
		b = scrubPrefixed(b, s.prefix)
	}
	if s.token != nil {
		s.low = append(s.low[:0], b...)
		lowerASCII(s.low)
		if bytes.Contains(s.low, s.token) {
			b = replaceFold(b, s.token, []byte(removedMarker))
		}
	}
	return b
}

// scrubPrefixed replaces every prefix followed by at least one token
// character, with all the token characters that follow it.
func scrubPrefixed(b, prefix []byte) []byte {
	var out []byte
	rest := b
	for {
		i := bytes.Index(rest, prefix)
		if i < 0 {
			break
		}
		j := i + len(prefix)
		for j < len(rest) && isTokenByte(rest[j]) {
			j++
		}
		if j == i+len(prefix) {
			out = append(out, rest[:j]...)
		} else {
			out = append(append(out, rest[:i]...), removedMarker...)
		}
		rest = rest[j:]
	}
	if out == nil {
		return b
	}
	return append(out, rest...)
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}
