package promtext

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	s, err := Parse(strings.NewReader(`# HELP x_total Things.
# TYPE x_total counter
x_total{b="2",a="1"} 3
x_total{a="q\"uote",b=""} 1
y 4.5e-06
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Get("y"); got != 4.5e-06 {
		t.Errorf("y = %v", got)
	}
	// Key orders labels by name, as the exposition writes them; a series
	// written in another order is a different key.
	if s.Has("x_total", "b", "2", "a", "1") {
		t.Errorf("label order is not the exposition's")
	}
	if got := s.Get("x_total", "a", `q"uote`, "b", ""); got != 1 {
		t.Errorf("quoted label: %v (keys %v)", got, s)
	}
	if _, err := Parse(strings.NewReader("x_total notanumber\n")); err == nil {
		t.Errorf("a bad value parsed")
	}
}
