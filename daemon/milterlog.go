package daemon

import (
	"fmt"
	"log/slog"

	gomilter "github.com/d--j/go-milter"
)

// RouteMilterWarnings sends go-milter's warnings (a broken MTA connection,
// a protocol oddity) to log instead of the standard logger's stderr lines
// without level or fields. go-milter offers only a package variable for
// this, so it is process-wide: call it once, from the command, before any
// milter server runs — assigning it while one runs would race with its
// reads. Start does not call it, so that several daemons in one test
// process never write it.
func RouteMilterWarnings(log *slog.Logger) {
	log = log.With("component", "milter")
	gomilter.LogWarning = func(format string, v ...any) {
		log.Warn("go-milter: " + fmt.Sprintf(format, v...))
	}
}
