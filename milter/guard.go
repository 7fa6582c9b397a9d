package milter

import (
	"github.com/restrictedmail/restrictedmail/guard"
)

// The guard (package guard) is consulted by policy.Checker where a token is
// about to be looked up, and told where the lookup found no such token.
// Its keys are the SMTP client's address, from Postfix's {client_addr}
// macro, and the envelope sender. Nothing of this runs for ordinary mail,
// nor for a restricted message without a token: no token, no guess.

// guardKeys returns the message's keys for the guard.
func (c *session) guardKeys() []string {
	return []string{guard.ClientKey(c.msg.client), guard.SenderKey(c.msg.from)}
}
