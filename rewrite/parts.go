package rewrite

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/transform"
)

// bodyScrubber is where the copy's body goes: token.Finder.StripParts
// writes to it and tells it the parts (token.PartWriter). Every byte ends
// in the byte-level scrubber (raw); on the way, header blocks of parts and
// of forwarded messages are scrubbed as a reader sees them (words.go), and
// the content of a text part whose transfer encoding or charset hides its
// text from the bytes is decoded and scrubbed (partScrub): when that finds
// nothing the part's bytes go on untouched, else the part is decoded,
// scrubbed and encoded again with its transfer encoding and charset.
type bodyScrubber struct {
	raw      *scrubber
	m        matcher // header blocks; raw has its own
	field    func(m *matcher, raw []byte) []byte
	prefix   string
	token    string
	spoolDir string
	part     *partScrub // the text part being read, nil when none
	spool    spool      // reused from part to part
}

// newBodyScrubber writes the scrubbed body to out; field scrubs one field
// of a header block.
func newBodyScrubber(out io.Writer, prefix, tok, spoolDir string, field func(*matcher, []byte) []byte) *bodyScrubber {
	return &bodyScrubber{
		raw: newScrubber(out, prefix, tok), m: newMatcher(prefix, tok), field: field,
		prefix: prefix, token: tok, spoolDir: spoolDir,
	}
}

func (b *bodyScrubber) Write(p []byte) (int, error) {
	if b.part != nil {
		return b.part.Write(p)
	}
	return b.raw.Write(p)
}

// WriteHeader scrubs the decoded view of each field of a header block.
func (b *bodyScrubber) WriteHeader(block []byte) error {
	if b.part != nil {
		// Cannot happen (a header block never falls inside content);
		// should it, the bytes keep their order.
		if err := b.EndContent(); err != nil {
			return err
		}
	}
	_, err := b.raw.Write(scrubHeaderBlock(&b.m, block, b.field))
	return err
}

// BeginContent starts collecting a text part that needs decoding; any
// other content goes straight on.
func (b *bodyScrubber) BeginContent(h textproto.Header) error {
	if b.part != nil {
		if err := b.EndContent(); err != nil {
			return err
		}
	}
	cte, enc, ok := needsDecoding(h)
	if !ok {
		return nil
	}
	b.spool.reset(b.spoolDir)
	b.part = newPartScrub(cte, enc, &b.spool, b.prefix, b.token)
	return nil
}

// EndContent writes the collected part: as it came, or scrubbed.
func (b *bodyScrubber) EndContent() error {
	p := b.part
	if p == nil {
		return nil
	}
	b.part = nil
	return p.finish(b.raw)
}

func (b *bodyScrubber) flush() error {
	if err := b.EndContent(); err != nil {
		return err
	}
	b.spool.close()
	return b.raw.flush()
}

// scrubHeaderBlock scrubs each field of a part's or forwarded message's
// header with field; the byte-level scrub follows in the stream.
func scrubHeaderBlock(m *matcher, block []byte, field func(*matcher, []byte) []byte) []byte {
	var out []byte
	for i := 0; i < len(block); {
		j := i
		for {
			k := bytes.IndexByte(block[j:], '\n')
			if k < 0 {
				j = len(block)
				break
			}
			j += k + 1
			if j >= len(block) || block[j] != ' ' && block[j] != '\t' {
				break
			}
		}
		out = append(out, field(m, block[i:j])...)
		i = j
	}
	return out
}

// needsDecoding says whether a leaf part is text that a reader sees only
// decoded: a text/* part (or one without a Content-Type, which is
// text/plain) in base64 or quoted-printable, or in a charset that does not
// write ASCII as ASCII (UTF-16 and the like), which then has to be
// transcoded to be compared.
func needsDecoding(h textproto.Header) (cte string, enc encoding.Encoding, ok bool) {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil && mt == "" || !strings.Contains(mt, "/") {
		// None, or unreadable: readers take text/plain (RFC 2045 §5.2).
		mt = "text/plain"
	}
	if !strings.HasPrefix(mt, "text/") {
		return "", nil, false
	}
	switch cte = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "base64", "quoted-printable":
	default:
		cte = ""
	}
	enc = transcoding(params["charset"])
	return cte, enc, cte != "" || enc != nil
}

// asciiProbe is what must come out of a charset's encoder unchanged for
// its text to be compared as bytes: every character of a token, of a
// prefix (printable ASCII) and of a fold.
var asciiProbe = func() []byte {
	b := []byte("\r\n ")
	for c := byte('!'); c <= '~'; c++ {
		b = append(b, c)
	}
	return b
}()

// transcoding returns the charset's encoding when it does not write ASCII
// as ASCII, nil otherwise. Charsets are looked up as go-message's charset
// package looks them up; one it does not know is compared as bytes (the
// token is ASCII). ASCII-compatible multi-byte charsets (Shift_JIS, Big5,
// ISO-2022-JP) are compared as bytes too: a token in them is in ASCII.
func transcoding(name string) encoding.Encoding {
	name = strings.ToLower(strings.TrimSpace(name))
	switch name {
	case "", "us-ascii", "utf-8", "iso-8859-1", "windows-1252":
		return nil
	}
	enc, _ := ianaindex.MIME.Encoding(name)
	if enc == nil {
		enc, _ = ianaindex.MIME.Encoding("cs" + name)
	}
	if enc == nil {
		enc, _ = htmlindex.Get(name)
	}
	if enc == nil {
		return nil
	}
	if out, err := enc.NewEncoder().Bytes(asciiProbe); err == nil && bytes.Equal(out, asciiProbe) {
		return nil
	}
	return enc
}

// partScrub reads one text part: it keeps its bytes (spool) and decodes
// them as they arrive into a scrubber that only looks (det). At the end,
// the part is written as it came if det found nothing, else decoded again
// from the spool, scrubbed, and encoded.
type partScrub struct {
	cte        string
	enc        encoding.Encoding
	spool      *spool
	det        *scrubber
	scan       []stage // the decoding chain into det, first stage first
	prefix     string
	token      string
	last       byte // last byte of the content
	err        error
	nonEmpty   bool
	scanFailed bool
}

func newPartScrub(cte string, enc encoding.Encoding, sp *spool, prefix, tok string) *partScrub {
	p := &partScrub{cte: cte, enc: enc, spool: sp, prefix: prefix, token: tok}
	p.det = newScrubber(io.Discard, prefix, tok)
	p.scan = decodeChain(cte, enc, p.det)
	return p
}

func (p *partScrub) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if len(b) > 0 {
		p.last = b[len(b)-1]
		p.nonEmpty = true
	}
	if _, err := p.spool.Write(b); err != nil {
		p.err = err
		return 0, err
	}
	if !p.scanFailed {
		if _, err := p.scan[0].Write(b); err != nil {
			p.scanFailed = true
		}
	}
	return len(b), nil
}

// decodeChain is transfer decoding, then transcoding, into sc.
func decodeChain(cte string, enc encoding.Encoding, sc *scrubber) []stage {
	var chain []stage
	var next io.Writer = sc
	if enc != nil {
		tw := transform.NewWriter(next, enc.NewDecoder())
		chain = append(chain, tw)
		next = tw
	}
	switch cte {
	case "base64":
		chain = append(chain, &b64Decoder{w: next})
	case "quoted-printable":
		chain = append(chain, &qpDecoder{w: next})
	}
	if len(chain) == 0 {
		chain = append(chain, nopStage{next})
	}
	// Built from the scrubber outwards: put the first stage first.
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain
}

type nopStage struct{ io.Writer }

func (nopStage) Close() error { return nil }

// closeChain closes each stage in order, then the scrubber.
func closeChain(chain []stage, sc *scrubber) error {
	for _, s := range chain {
		if err := s.Close(); err != nil {
			return err
		}
	}
	return sc.flush()
}

func (p *partScrub) finish(out io.Writer) error {
	if p.err != nil {
		return p.err
	}
	// A part that cannot be decoded to the end (a broken charset) is
	// rewritten as far as it decodes: what could not be read is not shown.
	found := p.scanFailed || closeChain(p.scan, p.det) != nil || p.det.changed
	r, err := p.spool.reader()
	if err != nil {
		return err
	}
	if !found {
		_, err = io.Copy(out, r)
		return err
	}
	// Decode, scrub, encode: the scrubber writes into the encoders.
	var enc []stage
	var next io.Writer = &lineEnd{w: out}
	le := next.(*lineEnd)
	switch p.cte {
	case "base64":
		e := &b64Encoder{w: next}
		enc, next = append(enc, e), e
	case "quoted-printable":
		e := newQPEncoder(next)
		enc, next = append(enc, e), e
	}
	if p.enc != nil {
		tw := transform.NewWriter(next, encoding.ReplaceUnsupported(p.enc.NewEncoder()))
		enc, next = append(enc, tw), tw
	}
	sc := newScrubber(next, p.prefix, p.token)
	dec := decodeChain(p.cte, p.enc, sc)
	if _, err := io.Copy(dec[0], r); err != nil {
		return fmt.Errorf("scrubbing a text part: %w", err)
	}
	if err := closeChain(dec, sc); err != nil {
		return fmt.Errorf("scrubbing a text part: %w", err)
	}
	for i := len(enc) - 1; i >= 0; i-- {
		if err := enc[i].Close(); err != nil {
			return fmt.Errorf("scrubbing a text part: %w", err)
		}
	}
	// The content ended with a line break before the next delimiter:
	// so must the new one.
	if p.nonEmpty && p.last == '\n' && le.n > 0 && le.last != '\n' {
		_, err = out.Write([]byte("\r\n"))
	}
	return err
}

// lineEnd is tailWriter under another name: the end of a rewritten part.
type lineEnd = tailWriter

// partMemoryMax is how much of one text part is held in memory while it
// is read; the rest of a larger part goes to a temporary file.
const partMemoryMax = 1 << 20

// spool keeps a part's bytes: in memory up to partMemoryMax, in chunks
// (what is held is what is allocated, and is used again by the next
// part), then in an unlinked temporary file (nothing stays behind, even
// after a crash).
type spool struct {
	dir    string
	chunks [][]byte // full chunks, then the one being filled
	used   int      // chunks in use
	n      int
	f      *os.File
	bw     *bufio.Writer
}

const spoolChunk = 64 << 10

func (s *spool) reset(dir string) {
	s.dir = dir
	for i := range s.chunks {
		s.chunks[i] = s.chunks[i][:0]
	}
	s.used, s.n = 0, 0
	if s.f != nil {
		s.f.Close()
		s.f, s.bw = nil, nil
	}
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.n+len(p) <= partMemoryMax {
		s.n += len(p)
		for rest := p; len(rest) > 0; {
			if s.used == 0 || len(s.chunks[s.used-1]) == spoolChunk {
				if s.used == len(s.chunks) {
					s.chunks = append(s.chunks, make([]byte, 0, spoolChunk))
				}
				s.used++
			}
			c := &s.chunks[s.used-1]
			k := min(len(rest), spoolChunk-len(*c))
			*c = append(*c, rest[:k]...)
			rest = rest[k:]
		}
		return len(p), nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "rm-part-*")
		if err != nil {
			return 0, fmt.Errorf("spooling a text part: %w", err)
		}
		os.Remove(f.Name())
		s.f, s.bw = f, bufio.NewWriterSize(f, spoolChunk)
		for _, c := range s.chunks[:s.used] {
			if _, err := s.bw.Write(c); err != nil {
				return 0, fmt.Errorf("spooling a text part: %w", err)
			}
		}
		// The memory goes: a part that needs a file is a large one.
		s.chunks, s.used = nil, 0
	}
	if _, err := s.bw.Write(p); err != nil {
		return 0, fmt.Errorf("spooling a text part: %w", err)
	}
	return len(p), nil
}

func (s *spool) reader() (io.Reader, error) {
	if s.f == nil {
		rs := make([]io.Reader, s.used)
		for i, c := range s.chunks[:s.used] {
			rs[i] = bytes.NewReader(c)
		}
		return io.MultiReader(rs...), nil
	}
	if err := s.bw.Flush(); err != nil {
		return nil, fmt.Errorf("spooling a text part: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spooling a text part: %w", err)
	}
	return s.f, nil
}

func (s *spool) close() {
	s.reset(s.dir)
}
