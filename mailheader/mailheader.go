// Package mailheader reads the header of an RFC 5322 message into go-message's
// textproto.Header without losing a byte, with a size limit, and tolerant of
// the malformed headers found in the wild.
package mailheader

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-message/textproto"
)

// MaxBytes bounds a message header. Postfix cuts headers at
// header_size_limit (100 KiB by default), so ten times that is only ever
// reached by a hostile or broken peer.
const MaxBytes = 1 << 20

// ErrTooLarge is returned for a header above MaxBytes.
var ErrTooLarge = fmt.Errorf("message header is larger than %d bytes", MaxBytes)

// maxNameLen bounds how far Read looks for the colon of a field name. RFC
// 5322 limits a line to 998 characters; field names are far shorter.
const maxNameLen = 998

// Read reads a message header from br and leaves br at the first byte of
// the body. Each field keeps its raw bytes (folding and line ending
// included), so that textproto.WriteHeader writes untouched fields back
// byte for byte. Like Postfix's cleanup, Read ends the header at the blank
// line (consumed) or at the first line that is neither a field nor a
// continuation (left in br as the start of the body).
func Read(br *bufio.Reader) (textproto.Header, error) {
	var (
		fields [][]byte
		cur    []byte
		total  int
	)
	for {
		kind, err := peekKind(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return textproto.Header{}, fmt.Errorf("reading message header: %w", err)
		}
		if kind == lineBody {
			break
		}
		if kind == lineBlank {
			_, err := br.ReadSlice('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return textproto.Header{}, fmt.Errorf("reading message header: %w", err)
			}
			break
		}
		if kind == lineContinuation && cur == nil {
			// A header may not start with a continuation; Postfix takes such
			// a line as body, and so do we.
			break
		}
		line, err := readLine(br, MaxBytes-total)
		total += len(line)
		if errors.Is(err, ErrTooLarge) {
			return textproto.Header{}, ErrTooLarge
		}
		if kind == lineField {
			if cur != nil {
				fields = append(fields, cur)
			}
			cur = line
		} else {
			cur = append(cur, line...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return textproto.Header{}, fmt.Errorf("reading message header: %w", err)
		}
	}
	if cur != nil {
		fields = append(fields, cur)
	}
	var h textproto.Header
	// AddRaw puts a field at the top, so add them last to first.
	for i := len(fields) - 1; i >= 0; i-- {
		f := fields[i]
		if f[len(f)-1] != '\n' {
			// The last field of a message with no body and no final newline.
			f = append(f, '\r', '\n')
		}
		h.AddRaw(f)
	}
	return h, nil
}

type lineKind int

const (
	lineField lineKind = iota
	lineContinuation
	lineBlank
	lineBody
)

// peekKind classifies the next line without consuming it.
func peekKind(br *bufio.Reader) (lineKind, error) {
	b, err := br.Peek(1)
	if len(b) == 0 {
		return lineBody, err
	}
	switch b[0] {
	case ' ', '\t':
		return lineContinuation, nil
	case '\n':
		return lineBlank, nil
	case '\r':
		if b2, _ := br.Peek(2); len(b2) == 2 && b2[1] == '\n' {
			return lineBlank, nil
		}
		return lineBody, nil
	}
	n := maxNameLen + 1
	if n > br.Size() {
		n = br.Size()
	}
	b, _ = br.Peek(n)
	spaced := false
	for i, c := range b {
		switch {
		case c == ':':
			if i == 0 {
				return lineBody, nil
			}
			return lineField, nil
		case c == ' ' || c == '\t':
			// The white space some broken mailers put before the colon;
			// like Postfix's is_header, only there: "From alice@... 2015"
			// (an mbox From_ line) is no field.
			spaced = true
		case c < '!' || c > '~' || spaced:
			// RFC 5322 §3.6.8 ftext.
			return lineBody, nil
		}
	}
	return lineBody, nil
}

// readLine reads one line, terminator included, copying it out of br's
// buffer; more than max bytes is ErrTooLarge.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, ErrTooLarge
		}
		line = append(line, frag...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}
