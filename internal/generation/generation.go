// Package generation maps the TOML configuration onto the option structs
// of the core (policy, delivery, rewrite, relay, guard): one generation is
// everything a transaction uses, built at once from one configuration, so
// that a reload swaps it whole and a message never mixes two. It is the
// only wiring between package config and the core; the core never sees a
// config type.
package generation

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/delivery"
	"github.com/restrictedmail/restrictedmail/guard"
	"github.com/restrictedmail/restrictedmail/policy"
	"github.com/restrictedmail/restrictedmail/postfixcheck"
	"github.com/restrictedmail/restrictedmail/relay"
	"github.com/restrictedmail/restrictedmail/rewrite"
	"github.com/restrictedmail/restrictedmail/token"
)

// Generation is one configuration and what is built from it.
type Generation struct {
	Config   *config.Config
	Rules    *policy.Rules
	Relay    *relay.Client
	Delivery *delivery.Settings
}

// New builds the generation of cfg, with a relay client that reports to
// obs (nil: none).
func New(cfg *config.Config, log *slog.Logger, obs relay.Observer) (*Generation, error) {
	rc, err := relay.New(RelayOptions(cfg), log)
	if err != nil {
		return nil, fmt.Errorf("setting up the relay client: %w", err)
	}
	if obs != nil {
		rc = rc.WithObserver(obs)
	}
	g := &Generation{Config: cfg, Rules: Rules(cfg), Relay: rc}
	g.Delivery = Settings(cfg, g.Rules, rc)
	return g, nil
}

// Rules maps [[lists]], recipient_delimiter and [tokens] onto the
// decision's rules.
func Rules(cfg *config.Config) *policy.Rules {
	lists := make([]*policy.List, 0, len(cfg.Lists))
	for i := range cfg.Lists {
		l := &cfg.Lists[i]
		lists = append(lists, &policy.List{
			Addr: l.Addr, Bounce: l.Bounce, Name: l.Name, ListID: l.ListID,
			HideSender: l.HideSender, Members: l.Members, Aliases: l.AliasAddrs,
			Report: l.Report, BounceForward: l.BounceFwd,
		})
	}
	r := policy.NewRules(cfg.RecipientDelimiter, Finder(cfg), lists)
	r.Issue = policy.IssueDefaults{TTL: cfg.Tokens.DefaultTTL.D(), Uses: cfg.Tokens.DefaultUses}
	r.Source = cfg.File
	r.Transport = cfg.LMTP.Route()
	r.GuessTrusted = cfg.Tokens.GuessTrusted
	return r
}

// Finder is the token finder of [tokens].
func Finder(cfg *config.Config) token.Finder {
	return token.Finder{Prefix: cfg.Tokens.Prefix, Header: cfg.Tokens.Header}
}

// Settings maps what a delivery needs; sender is the relay client of the
// same generation.
func Settings(cfg *config.Config, rules *policy.Rules, sender delivery.Sender) *delivery.Settings {
	return &delivery.Settings{
		Rules: rules, Relay: sender, Hostname: cfg.Hostname, Keys: Keys(cfg),
		SpoolDir: cfg.SpoolDir(), GiveUpAfter: cfg.LMTP.GiveUpAfter.D(), Lease: cfg.LMTP.Lease.D(),
		ReportWindow: cfg.Reports.Window.D(),
	}
}

// Keys maps [[dkim]] by lower-cased domain.
func Keys(cfg *config.Config) map[string]*rewrite.Key {
	keys := make(map[string]*rewrite.Key, len(cfg.DKIM))
	for _, k := range cfg.DKIM {
		keys[strings.ToLower(k.Domain)] = &rewrite.Key{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer}
	}
	return keys
}

// RelayOptions maps [relay].
func RelayOptions(cfg *config.Config) relay.Options {
	r := cfg.Relay
	return relay.Options{
		Address: r.Address, TLS: r.TLS, CAFile: r.CAFile, Username: r.Username, Password: r.Password,
		HeloName: r.HeloName, MaxRecipients: r.MaxRecipients, Connections: r.Connections,
		ConnectTimeout: r.ConnectTimeout.D(), CommandTimeout: r.CommandTimeout.D(),
	}
}

// PostfixCheck maps what check-postfix compares with Postfix's
// configuration.
func PostfixCheck(cfg *config.Config) postfixcheck.Options {
	return postfixcheck.Options{ConfigDir: cfg.Postfix.ConfigDirectory, Milter: cfg.Milter.Listen, Rules: Rules(cfg)}
}

// GuessLimits are the guard's limits from [tokens]. One guard serves the
// milter and the LMTP endpoint, so that a sender's guesses count the same
// whichever of the two judged them, and a reload changes its limits
// without forgetting the blocks in force.
func GuessLimits(cfg *config.Config) guard.Limits {
	return guard.Limits{Limit: cfg.Tokens.GuessLimit, Window: cfg.Tokens.GuessWindow.D(), Block: cfg.Tokens.GuessBlock.D()}
}
