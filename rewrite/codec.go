package rewrite

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
)

// The decoders here read as lenient mail readers do, since what matters is
// what a reader is shown: base64 skips every character outside its
// alphabet (RFC 2045 §6.8) and goes on after padding (concatenated
// encodings), quoted-printable keeps an "=" that starts no escape. They are
// writers, so that a part can be decoded while it arrives.

// stage is one step of a decoding or encoding chain: Close writes what it
// still holds to the next step (and does not close that).
type stage interface {
	io.Writer
	Close() error
}

// b64Decoder decodes base64 written to it into w.
type b64Decoder struct {
	w     io.Writer
	clean []byte // alphabet characters not yet decoded
	out   []byte // scratch
}

// b64Class: 1 for the alphabet, 2 for the padding character.
var b64Class = func() (t [256]byte) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 1
	}
	t['='] = 2
	return t
}()

// b64Chunk bounds what one step of Write decodes, and so its scratch.
const b64Chunk = 16 << 10

func (d *b64Decoder) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		chunk := p[:min(len(p), b64Chunk)]
		p = p[len(chunk):]
		for i := 0; i < len(chunk); {
			j := i
			for j < len(chunk) && b64Class[chunk[j]] == 1 {
				j++
			}
			d.clean = append(d.clean, chunk[i:j]...)
			if j < len(chunk) && chunk[j] == '=' {
				// Padding ends an encoding; another may follow (several
				// encodings run together).
				if err := d.flush(true); err != nil {
					return 0, err
				}
			}
			i = j + 1
		}
		if err := d.flush(false); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flush decodes the whole quanta held; with end, also an unfinished one
// as far as it goes (a quantum of one character is nothing).
func (d *b64Decoder) flush(end bool) error {
	whole := len(d.clean) / 4 * 4
	d.out, _ = base64.StdEncoding.AppendDecode(d.out[:0], d.clean[:whole])
	rest := d.clean[whole:]
	if end {
		if len(rest) >= 2 {
			d.out, _ = base64.RawStdEncoding.AppendDecode(d.out, rest)
		}
		rest = nil
	}
	d.clean = append(d.clean[:0], rest...)
	if len(d.out) == 0 {
		return nil
	}
	_, err := d.w.Write(d.out)
	return err
}

func (d *b64Decoder) Close() error { return d.flush(true) }

// decodeBase64Lenient decodes b as b64Decoder does.
func decodeBase64Lenient(b []byte) []byte {
	var out bytes.Buffer
	d := &b64Decoder{w: &out}
	d.Write(b)
	d.Close()
	return out.Bytes()
}

// qpDecoder decodes quoted-printable written to it into w, line by line:
// a soft line break ("=" at the end of a line) joins two lines, trailing
// blanks are transport padding (RFC 2045 §6.7), and a line break is
// written as it came (CRLF or LF).
type qpDecoder struct {
	w    io.Writer
	line []byte
	out  []byte
}

// qpLineMax bounds the unfinished line held: a longer one is decoded in
// pieces (never inside an escape or a run of blanks that may end it).
const qpLineMax = 64 << 10

func (d *qpDecoder) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.line = append(d.line, p...)
			if len(d.line) > qpLineMax {
				cut := len(d.line) - 2
				for cut > 0 && (d.line[cut-1] == ' ' || d.line[cut-1] == '\t' || d.line[cut-1] == '=') {
					cut--
				}
				if err := d.decode(d.line[:cut], false); err != nil {
					return 0, err
				}
				d.line = append(d.line[:0], d.line[cut:]...)
			}
			break
		}
		d.line = append(d.line, p[:i+1]...)
		p = p[i+1:]
		if err := d.decode(d.line, true); err != nil {
			return 0, err
		}
		d.line = d.line[:0]
	}
	return n, nil
}

func (d *qpDecoder) Close() error {
	if len(d.line) == 0 {
		return nil
	}
	err := d.decode(d.line, true)
	d.line = d.line[:0]
	return err
}

// decode writes one line (whole: with its line break, if any) or a piece
// of an overlong one.
func (d *qpDecoder) decode(b []byte, whole bool) error {
	eol := []byte(nil)
	if whole {
		switch {
		case bytes.HasSuffix(b, []byte("\r\n")):
			b, eol = b[:len(b)-2], []byte("\r\n")
		case bytes.HasSuffix(b, []byte("\n")):
			b, eol = b[:len(b)-1], []byte("\n")
		}
		b = bytes.TrimRight(b, " \t")
		if bytes.HasSuffix(b, []byte("=")) {
			b, eol = b[:len(b)-1], nil // soft line break
		}
	}
	d.out = d.out[:0]
	for i := 0; i < len(b); i++ {
		if c := b[i]; c == '=' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			d.out = append(d.out, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
		} else {
			d.out = append(d.out, c)
		}
	}
	d.out = append(d.out, eol...)
	_, err := d.w.Write(d.out)
	return err
}

// b64Encoder encodes what is written to it as base64 in lines of 76
// characters ending in CRLF (RFC 2045 §6.8), into w.
type b64Encoder struct {
	w    io.Writer
	in   []byte // bytes not yet encoded: fewer than one line's 57
	line []byte
}

const b64LineBytes = 57 // 76 characters

func (e *b64Encoder) Write(p []byte) (int, error) {
	n := len(p)
	for len(e.in)+len(p) >= b64LineBytes {
		k := b64LineBytes - len(e.in)
		e.in = append(e.in, p[:k]...)
		p = p[k:]
		if err := e.writeLine(); err != nil {
			return 0, err
		}
	}
	e.in = append(e.in, p...)
	return n, nil
}

func (e *b64Encoder) writeLine() error {
	e.line = base64.StdEncoding.AppendEncode(e.line[:0], e.in)
	e.line = append(e.line, '\r', '\n')
	e.in = e.in[:0]
	_, err := e.w.Write(e.line)
	return err
}

func (e *b64Encoder) Close() error {
	if len(e.in) == 0 {
		return nil
	}
	return e.writeLine()
}

// qpEncoder encodes as quoted-printable with lines of at most 76
// characters (the standard library's writer), and ends with a line break
// even when the text does not — then with a soft one — so that a
// delimiter that follows stays on a line of its own.
type qpEncoder struct {
	qw   *quotedprintable.Writer
	tail tailWriter
}

func newQPEncoder(w io.Writer) *qpEncoder {
	e := &qpEncoder{tail: tailWriter{w: w}}
	e.qw = quotedprintable.NewWriter(&e.tail)
	return e
}

func (e *qpEncoder) Write(p []byte) (int, error) { return e.qw.Write(p) }

func (e *qpEncoder) Close() error {
	if err := e.qw.Close(); err != nil {
		return err
	}
	if e.tail.n > 0 && e.tail.last != '\n' {
		_, err := e.tail.Write([]byte("=\r\n"))
		return err
	}
	return nil
}

// tailWriter remembers the last byte written through it.
type tailWriter struct {
	w    io.Writer
	last byte
	n    int64
}

func (t *tailWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
		t.n += int64(len(p))
	}
	return t.w.Write(p)
}
