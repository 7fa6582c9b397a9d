package lmtp

import (
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/policy"
)

// throttled reports whether the envelope sender has presented too many
// unknown tokens lately (package guard). It is asked only for a new
// delivery that carries a token: a delivery the journal knows was
// authorised already, and a tokenless message guesses nothing. The answer
// is 450 4.7.1, so Postfix keeps the message and tries again after the
// block.
func (s *Server) throttled(env envelope, f policy.Facts) bool {
	if f.Token == "" || s.opts.Guard == nil {
		return false
	}
	return s.opts.Guard.Blocked(f.Now, guard.SenderKey(env.from))
}

// noteGuess counts an unknown token against the envelope sender.
func (s *Server) noteGuess(env envelope, v policy.Verdict) {
	if v.Reason != policy.Unknown || s.opts.Guard == nil {
		return
	}
	if s.opts.Guard.Fail(s.opts.Now(), guard.SenderKey(env.from)) {
		s.log.Warn("too many unknown posting tokens: further deliveries from this sender get 450 4.7.1 for a while",
			"sender", env.from, "list", v.List)
	}
}
