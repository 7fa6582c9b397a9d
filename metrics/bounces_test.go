package metrics

import (
	"testing"

	"github.com/restrictedmail/restrictedmail/internal/promtext"
)

func TestBounces(t *testing.T) {
	t.Parallel()
	m := New(nil, nil)
	m.Bounce("board@example.org", "failed")
	m.Bounce("board@example.org", "failed")
	m.Bounce("board@example.org", "ignored")
	s := scrape(t, m)
	for k, want := range map[string]float64{
		promtext.Key("restrictedmail_bounces_total", "kind", "failed", "list", "board@example.org"):  2,
		promtext.Key("restrictedmail_bounces_total", "kind", "ignored", "list", "board@example.org"): 1,
	} {
		if got, ok := s[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
}
