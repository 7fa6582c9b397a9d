package daemon

import (
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/guard"
)

// guessLimits are the guard's limits from [tokens]. One guard serves the
// milter and the LMTP endpoint, so that a sender's guesses count the same
// whichever of the two judged them (the LMTP endpoint judges alone while
// the milter is down), and a reload changes its limits without forgetting
// the blocks in force.
func guessLimits(cfg *config.Config) guard.Limits {
	return guard.Limits{Limit: cfg.Tokens.GuessLimit, Window: cfg.Tokens.GuessWindow.D(), Block: cfg.Tokens.GuessBlock.D()}
}
