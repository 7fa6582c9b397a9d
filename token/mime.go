package token

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Limits that keep a hostile message from costing memory. A token file is a
// few hundred bytes; a part header a few hundred more.
const (
	// peekLimit is how much raw content of a leaf part is examined for the
	// prefix: enough for a base64 or quoted-printable token file with any
	// line breaks, far less than any real attachment.
	peekLimit = 8 << 10
	// partHeaderLimit bounds a MIME part's header; a larger one is passed
	// through as ordinary content, never parsed.
	partHeaderLimit = 64 << 10
	// maxDepth bounds multipart nesting; deeper multiparts are treated as
	// opaque leaves. 128 leaves room for the 100-deep case of the corpus.
	maxDepth   = 128
	readBuffer = 32 << 10
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// errStop ends a walk once the first token has been found.
var errStop = errors.New("token found")

// walker reads a MIME body line by line and finds (and, with out set,
// removes) every leaf part whose decoded content starts with the prefix.
// It preserves every other byte exactly: headers, preambles, epilogues,
// folding and line endings. Finding and removing share this one scanner so
// that they can never disagree about what a token part is.
type walker struct {
	br      *bufio.Reader
	out     io.Writer // nil when only finding
	prefix  []byte
	stack   [][]byte // "--boundary" of each open multipart, innermost last
	first   string   // token of the first token part
	removed int
	midLine bool   // the previous read ended inside an overlong line
	pending []byte // a delimiter line read ahead, to be handled next
	hold    bytes.Buffer
	// forwarded is the depth (len(stack)) from which the walk is inside a
	// forwarded message, 0 when it is not: its token parts are removed
	// when stripping but are never the message's token.
	forwarded int
	pw        PartWriter // out, when it wants to know the parts (parts.go)
	inContent bool       // a kept leaf part's content is being written
}

func newWalker(prefix string, body io.Reader, out io.Writer) *walker {
	br, ok := body.(*bufio.Reader)
	if !ok || br.Size() < readBuffer {
		br = bufio.NewReaderSize(body, readBuffer)
	}
	w := &walker{br: br, out: out, prefix: []byte(prefix)}
	w.pw, _ = out.(PartWriter)
	// One allocation for what leaf holds of each part, instead of the
	// doublings of a growing buffer for every message.
	w.hold.Grow(peekLimit + 1<<10)
	return w
}

// partHeader parses a part header read into hold. The reader's buffer is
// the header's size: bufio's default of 4 KiB for every part was most of
// what finding a token allocated.
func partHeader(b []byte) textproto.Header {
	h, _ := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(b), len(b)))
	return h
}

// readLine returns the next line with its terminator, or the next buffer-full
// of an overlong line. start is false for the continuation of such a line,
// which can never be a delimiter or a blank line.
func (w *walker) readLine() (line []byte, start bool, err error) {
	if w.pending != nil {
		line, w.pending = w.pending, nil
		return line, true, nil
	}
	start = !w.midLine
	line, err = w.br.ReadSlice('\n')
	w.midLine = errors.Is(err, bufio.ErrBufferFull)
	if w.midLine {
		err = nil
	}
	return line, start, err
}

func (w *walker) emit(b []byte) error {
	if w.out == nil || len(b) == 0 {
		return nil
	}
	_, err := w.out.Write(b)
	return err
}

// delimiter reports which open multipart the line delimits (-1: none) and
// whether it is that multipart's close delimiter. RFC 2046 §5.1.1 allows
// trailing linear white space after a boundary.
func (w *walker) delimiter(line []byte, start bool) (level int, closing bool) {
	if !start || len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return -1, false
	}
	l := bytes.TrimRight(line, " \t\r\n")
	for i := len(w.stack) - 1; i >= 0; i-- {
		d := w.stack[i]
		if !bytes.HasPrefix(l, d) {
			continue
		}
		switch rest := l[len(d):]; {
		case len(rest) == 0:
			return i, false
		case len(rest) == 2 && rest[0] == '-' && rest[1] == '-':
			return i, true
		}
	}
	return -1, false
}

// walk processes a body whose Content-Type is contentType. A top-level
// single part is never a carrier (LEGO's rule: a token file is an
// attachment), so only multipart bodies are examined — and, when
// stripping, a body that is a forwarded message, whose token files go as
// they do from a forwarded message in a part.
func (w *walker) walk(contentType string) error {
	if b := boundary(contentType); b != "" {
		w.stack = append(w.stack, []byte("--"+b))
	} else if isMessage(contentType) && w.out != nil {
		if err := w.enterForwarded(0); err != nil {
			return err
		}
	}
	for {
		line, start, err := w.readLine()
		if len(line) > 0 {
			if level, closing := w.delimiter(line, start); level >= 0 {
				if perr := firstErr(w.endContent(), w.onDelimiter(line, level, closing)); perr != nil {
					return perr
				}
			} else if eerr := w.emit(line); eerr != nil {
				return eerr
			}
		}
		if err == io.EOF {
			return w.endContent()
		}
		if err != nil {
			return err
		}
	}
}

func (w *walker) onDelimiter(line []byte, level int, closing bool) error {
	w.stack = w.stack[:level+1]
	if closing {
		w.stack = w.stack[:level]
	}
	if w.forwarded > len(w.stack) {
		w.forwarded = 0 // the forwarded message has ended
	}
	if closing {
		return w.emit(line)
	}
	w.hold.Reset()
	w.hold.Write(line)
	headerStart := w.hold.Len()
	complete, err := w.readPartHeader()
	if err != nil || !complete {
		// Ordinary content for the walker; a reader may still take it
		// for a header.
		return firstErr(err, w.flushParts(headerStart, w.hold.Len(), nil))
	}
	h := partHeader(w.hold.Bytes()[headerStart:])
	ct := h.Get("Content-Type")
	if b := boundary(ct); b != "" && len(w.stack) < maxDepth {
		w.stack = append(w.stack, []byte("--"+b))
		return w.flushParts(headerStart, w.hold.Len(), nil)
	}
	if isMessage(ct) {
		// A forwarded message is somebody else's mail: a token file inside
		// it does not authorise this one. When stripping, its token files
		// go all the same: a copy carries nobody's token.
		if w.out != nil && len(w.stack) < maxDepth {
			return w.enterForwarded(headerStart)
		}
		return w.flushHold()
	}
	return w.leaf(headerStart, h)
}

// enterForwarded passes on the header of a message/rfc822 part and of the
// message in it, and walks that message's parts when it is multipart; its
// body is a leaf otherwise.
func (w *walker) enterForwarded(headerStart int) error {
	if err := w.flushParts(headerStart, w.hold.Len(), nil); err != nil {
		return err
	}
	complete, err := w.readPartHeader()
	if err != nil || !complete {
		return firstErr(err, w.flushParts(0, w.hold.Len(), nil))
	}
	h := partHeader(w.hold.Bytes())
	if b := boundary(h.Get("Content-Type")); b != "" {
		w.stack = append(w.stack, []byte("--"+b))
		if w.forwarded == 0 {
			w.forwarded = len(w.stack)
		}
		return w.flushParts(0, w.hold.Len(), nil)
	}
	return w.flushParts(0, w.hold.Len(), &h)
}

// readPartHeader reads a part header into hold. It returns false when the
// header never ends properly (a delimiter or EOF first, or too long); what
// was read is then ordinary content.
func (w *walker) readPartHeader() (bool, error) {
	for {
		line, start, err := w.readLine()
		if len(line) > 0 {
			if level, _ := w.delimiter(line, start); level >= 0 {
				w.pending = bytes.Clone(line)
				return false, nil
			}
			w.hold.Write(line)
			if start && isBlank(line) {
				return true, nil
			}
			if w.hold.Len() > partHeaderLimit {
				return false, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// leaf reads up to peekLimit of a leaf part's content into hold, decides
// whether it is a token part, and either drops the part or passes it on.
func (w *walker) leaf(headerStart int, h textproto.Header) error {
	contentStart := w.hold.Len()
	atEOF := false
	for w.hold.Len()-contentStart < peekLimit {
		line, start, err := w.readLine()
		if len(line) > 0 {
			if level, _ := w.delimiter(line, start); level >= 0 {
				w.pending = bytes.Clone(line)
				break
			}
			w.hold.Write(line)
		}
		if err == io.EOF {
			atEOF = true
			break
		}
		if err != nil {
			return err
		}
	}
	tok := tokenIn(w.prefix, h.Get("Content-Transfer-Encoding"), w.hold.Bytes()[contentStart:])
	if tok == "" {
		return w.flushParts(headerStart, contentStart, &h)
	}
	if w.first == "" && w.forwarded == 0 {
		w.first = tok
	}
	w.removed++
	w.hold.Reset()
	if w.out == nil {
		return errStop
	}
	if w.pending != nil || atEOF {
		return nil
	}
	return w.skipToDelimiter()
}

// skipToDelimiter drops the rest of a removed part.
func (w *walker) skipToDelimiter() error {
	for {
		line, start, err := w.readLine()
		if level, _ := w.delimiter(line, start); level >= 0 {
			w.pending = bytes.Clone(line)
			return nil
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (w *walker) flushHold() error {
	err := w.emit(w.hold.Bytes())
	w.hold.Reset()
	return err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func isBlank(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// tokenIn decodes the start of a part's raw content and returns the token
// after the prefix, if the content starts with it.
func tokenIn(prefix []byte, cte string, raw []byte) string {
	if len(prefix) == 0 {
		// Without a prefix every part that starts with a word would be a
		// token file, and StripParts would drop the message's text. The
		// config refuses an empty prefix; a zero Finder must be harmless too.
		return ""
	}
	// Only the start of the content decides: a byte-order mark, the prefix
	// and a token of at most MaxLength characters, and one more byte to
	// see that the token ends there.
	need := len(utf8BOM) + len(prefix) + MaxLength + 1
	var dec []byte
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		dec = decodeBase64Prefix(raw, need)
	case "quoted-printable":
		// ReadAll returns what decoded before any error: a broken escape
		// later in the part does not hide a token at its start.
		dec, _ = io.ReadAll(io.LimitReader(quotedprintable.NewReader(bytes.NewReader(raw)), int64(need)))
	default:
		dec = raw
	}
	dec = bytes.TrimPrefix(dec, utf8BOM)
	if !bytes.HasPrefix(dec, prefix) {
		return ""
	}
	return leadingToken(dec[len(prefix):])
}

// decodeBase64Prefix decodes as much of raw as forms whole base64 quanta,
// up to the quantum that holds the need-th byte, ignoring line breaks and
// any other character outside the alphabet (RFC 2045 §6.8 tells decoders
// to ignore them).
func decodeBase64Prefix(raw []byte, need int) []byte {
	limit := (need + 2) / 3 * 4
	clean := make([]byte, 0, min(len(raw), limit))
	for _, c := range raw {
		if len(clean) == limit {
			break
		}
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
			clean = append(clean, c)
		}
	}
	clean = clean[:len(clean)/4*4]
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, _ := base64.StdEncoding.Decode(dec, clean)
	return dec[:n]
}

// boundary returns the boundary of a multipart Content-Type, or "".
func boundary(contentType string) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return ""
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return ""
	}
	b := params["boundary"]
	// RFC 2046 §5.1.1: 1 to 70 characters.
	if b == "" || len(b) > 70 {
		return ""
	}
	return b
}

func isMessage(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return strings.HasPrefix(mt, "message/")
}
