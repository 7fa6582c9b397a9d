package token

import (
	"io"

	"github.com/emersion/go-message/textproto"
)

// PartWriter is an io.Writer that StripParts also tells what the bytes it
// writes are, when its out implements it: the header blocks of parts and
// of forwarded messages, and where the content of each kept leaf part
// starts and ends. A redistributed copy needs this to scrub what a reader
// sees of those bytes (decoded header words, decoded text parts) with the
// same idea of the structure as the walker that removed the token parts.
//
// The bytes arrive in order and whole: a header block through WriteHeader
// instead of Write, everything else through Write. A leaf part's content is
// what follows its header up to the line break before the next delimiter
// line (or the end of the body); RFC 2046 §5.1.1 gives that line break to
// the delimiter, but it arrives before EndContent, as part of the content.
type PartWriter interface {
	io.Writer
	// WriteHeader receives one header block, from its first field to
	// the blank line that ends it (included): of a part, or of the
	// message inside a message/rfc822 part. A block that never ends (a
	// delimiter or the end of the body first, or longer than the walker
	// reads) is passed on as it was read; it is no header to the walker,
	// but it may be one to a reader.
	WriteHeader(block []byte) error
	// BeginContent announces the content of a kept leaf part whose
	// header is h. A forwarded message whose body is not multipart is
	// such a leaf: h is the forwarded message's header.
	BeginContent(h textproto.Header) error
	// EndContent ends the content announced by the last BeginContent.
	EndContent() error
}

// OneLeaf reports whether StripParts reads a body of this Content-Type
// as one leaf part (whose header is the message's, and of which it
// announces no BeginContent): neither a multipart with a usable boundary
// nor a forwarded message (message/*).
func OneLeaf(contentType string) bool {
	return boundary(contentType) == "" && !isMessage(contentType)
}

// beginContent tells the part writer that a leaf part's content follows.
func (w *walker) beginContent(h textproto.Header) error {
	if w.pw == nil {
		return nil
	}
	w.inContent = true
	return w.pw.BeginContent(h)
}

// endContent closes the leaf part's content announced last, if any.
func (w *walker) endContent() error {
	if !w.inContent {
		return nil
	}
	w.inContent = false
	return w.pw.EndContent()
}

// emitHeader writes a header block: through WriteHeader when out is a
// PartWriter.
func (w *walker) emitHeader(b []byte) error {
	if w.pw == nil || len(b) == 0 {
		return w.emit(b)
	}
	return w.pw.WriteHeader(b)
}

// flushParts writes hold, which holds a delimiter line (up to
// headerStart), a complete header block (up to contentStart) and maybe
// the start of a content, each the way a PartWriter wants it. With leaf
// set, that content is a kept leaf part's, whose header is *leaf.
func (w *walker) flushParts(headerStart, contentStart int, leaf *textproto.Header) error {
	b := w.hold.Bytes()
	err := w.emit(b[:headerStart])
	if err == nil {
		err = w.emitHeader(b[headerStart:contentStart])
	}
	if err == nil && leaf != nil {
		err = w.beginContent(*leaf)
	}
	if err == nil {
		err = w.emit(b[contentStart:])
	}
	w.hold.Reset()
	return err
}
