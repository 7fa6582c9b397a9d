package daemon

import (
	"net/http"
	"time"

	"github.com/restrictedmail/restrictedmail/api"
	"github.com/restrictedmail/restrictedmail/config"
	"github.com/restrictedmail/restrictedmail/internal/generation"
	"github.com/restrictedmail/restrictedmail/web"
)

// webHandler returns what the API's listener serves: the API under
// /api/v1/ and, with [web] enabled, the web page for list owners under /.
func (d *Daemon) webHandler(cfg *config.Config) (http.Handler, error) {
	if !cfg.Web.Enabled {
		return d.api, nil
	}
	w, err := web.New(web.Options{
		Store:    d.db,
		Settings: func() web.Settings { return generation.WebSettings(d.gen.Load()) },
		Mailer:   &signInMailer{gen: d.gen.Load, now: time.Now, host: cfg.Hostname},
		Logger:   d.log.With("component", "web"),
	})
	if err != nil {
		return nil, err
	}
	d.web = w
	mux := http.NewServeMux()
	mux.Handle(api.Base+"/", d.api)
	mux.Handle("/", w)
	return mux, nil
}

// stopWeb waits for the sign-in mails being sent.
func (d *Daemon) stopWeb() {
	if d.web != nil {
		d.web.Close()
	}
}
