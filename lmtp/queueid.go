package lmtp

import (
	"bufio"
	"bytes"
	"io"
)

// maxQueueIDScan bounds how much of a message queueID reads: the topmost
// Received field is at the very top.
const maxQueueIDScan = 8 << 10

// queueID returns the Postfix queue id of the message, for the delivery's
// log line. LMTP does not carry it, but the Received field Postfix put on
// top of the message does: "... by mx.example.org (Postfix) with ESMTP id
// 4Xq1Yz2Hk9z1; Tue, ..." (or "(Postfix, from userid 1000) id ..." for
// local submission). Only the first field of the header is considered, and
// only when it is a Received field, so that an id the sender wrote further
// down is not taken for ours; an id must be letters and digits, as Postfix's
// are. It returns "" when there is none.
func queueID(r io.Reader) string {
	br := bufio.NewReaderSize(io.LimitReader(r, maxQueueIDScan), 1024)
	var field []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(field) == 0 {
			if len(line) < 9 || !bytes.EqualFold(line[:9], []byte("received:")) {
				return ""
			}
			field = append(field, line[9:]...)
		} else if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			field = append(field, line...)
		} else {
			break
		}
		if err != nil {
			break // the field may be cut at the bound: what was read is searched
		}
	}
	return idIn(field)
}

// idIn finds the word after " id " in a Received field's value.
func idIn(v []byte) string {
	for i := 0; i+4 <= len(v); i++ {
		if !isSpace(v[i]) || v[i+1] != 'i' || v[i+2] != 'd' || !isSpace(v[i+3]) {
			continue
		}
		j := i + 3
		for j < len(v) && isSpace(v[j]) {
			j++
		}
		k := j
		for k < len(v) && isAlnum(v[k]) {
			k++
		}
		// Postfix's short ids have 6 or more hex digits, its long ids
		// about 15 letters and digits; either ends the word or meets ";".
		if n := k - j; n >= 5 && n <= 32 && (k == len(v) || v[k] == ';' || isSpace(v[k])) {
			return string(v[j:k])
		}
	}
	return ""
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
