package milter

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/restrictedmail/restrictedmail/token"
)

var (
	errScanDone    = errors.New("token scan finished")
	errScanAborted = errors.New("message aborted")
)

// bodyScan runs token.Finder.InBody over a body that arrives in chunks.
// The chunks go through an io.Pipe, so nothing is buffered beyond the
// finder's own few kilobytes: a 50 MB message costs no more memory than a
// small one, needs no temporary file, and is scanned while it is being
// transferred.
type bodyScan struct {
	pw      *io.PipeWriter
	stopped atomic.Bool   // the finder returned; later chunks are dropped
	done    chan struct{} // closed when the finder's goroutine has ended
	tok     string        // set before done is closed
	err     error         // set before done is closed
}

func startBodyScan(f token.Finder, contentType string) *bodyScan {
	pr, pw := io.Pipe()
	b := &bodyScan{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		defer func() {
			if r := recover(); r != nil {
				b.err = fmt.Errorf("panic while scanning the body: %v\n%s", r, debug.Stack())
			}
			b.stopped.Store(true)
			// Unblocks a write in progress: the finder reads no more.
			pr.CloseWithError(errScanDone)
		}()
		b.tok, b.err = f.InBody(contentType, pr)
	}()
	return b
}

// write hands one chunk to the finder. It blocks while the finder works
// through the chunk (which bounds memory), and returns at once when the
// finder has stopped reading.
func (b *bodyScan) write(chunk []byte) {
	if b.stopped.Load() {
		return
	}
	// The only errors are errScanDone and errScanAborted: both mean the
	// chunk is not needed.
	_, _ = b.pw.Write(chunk)
}

// finish ends the body and returns the token of the first token part ("" for
// none), waiting at most timeout for the finder.
func (b *bodyScan) finish(timeout time.Duration) (string, error) {
	b.pw.Close()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-b.done:
		return b.tok, b.err
	case <-t.C:
		b.pw.CloseWithError(errScanAborted)
		return "", fmt.Errorf("scanning the body took longer than %s", timeout)
	}
}

// abort stops the scan of a message that will not be judged, and waits for
// the finder's goroutine, which returns as soon as it reads again.
func (b *bodyScan) abort() {
	b.pw.CloseWithError(errScanAborted)
	<-b.done
}
