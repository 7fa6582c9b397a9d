package milter

import (
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// The guard (package guard) is told, through policy.Checker, of every
// unknown token; its keys are the pair (SMTP client address, envelope
// sender) and the client address alone — unless the client is a trusted
// upstream (tokens.guess_trusted_networks). A forged sender blocks only
// the forger's pair, and the guard never holds back a valid token. Nothing
// of this runs for ordinary mail, nor for a restricted message without a
// token: no token, no guess.

// guardKeys returns the message's keys for the guard.
func (c *session) guardKeys() []string {
	return c.msg.rules.GuessKeys(c.msg.client, c.msg.from)
}

// clientAddr is the SMTP client's address: {client_addr}, which the milter
// asks for at RCPT; or, from an MTA that cannot be asked (Postfix with
// milter_protocol = 2), the address in brackets of the connect macro "_"
// ("client.example.net [192.0.2.1]").
func clientAddr(m gomilter.Modifier) string {
	if a := m.Get(gomilter.MacroClientAddr); a != "" {
		return a
	}
	v := m.Get("_")
	i, j := strings.LastIndexByte(v, '['), strings.LastIndexByte(v, ']')
	if i < 0 || j < i {
		return ""
	}
	return v[i+1 : j]
}
