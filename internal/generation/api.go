package generation

import (
	"github.com/restrictedmail/restrictedmail/api"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/tokenops"
	"github.com/restrictedmail/restrictedmail/webhook"
)

// TokenSettings maps what the token operations (tokenops) need from a
// generation: its rules and [tokens] max_recipients.
func TokenSettings(g *Generation) tokenops.Settings {
	return tokenops.Settings{Rules: g.Rules, MaxRecipients: g.Config.Tokens.MaxRecipients}
}

// TokenSettingsOf is TokenSettings for a command that has a configuration
// and no generation.
func TokenSettingsOf(cfg *config.Config) tokenops.Settings {
	return tokenops.Settings{Rules: Rules(cfg), MaxRecipients: cfg.Tokens.MaxRecipients}
}

// APILimits maps the reloadable settings of [api].
func APILimits(cfg *config.Config) api.Limits {
	a := cfg.API
	return api.Limits{
		MaxBodySize: a.MaxBodySize, FailureLimit: a.AuthFailureLimit, FailureWindow: a.AuthFailureWindow.D(),
		FailureBlock: a.AuthFailureBlock.D(), FailureDelay: a.AuthFailureDelay.D(),
	}
}

// Webhooks maps [[webhooks]].
func Webhooks(cfg *config.Config) []webhook.Endpoint {
	out := make([]webhook.Endpoint, 0, len(cfg.Webhooks))
	for _, w := range cfg.Webhooks {
		out = append(out, webhook.Endpoint{
			URL: w.URL, Secret: w.Secret, Events: w.Events, Timeout: w.Timeout.D(), Backoff: w.Backoff.D(),
			GiveUpAfter: w.GiveUpAfter.D(),
		})
	}
	return out
}
