package daemon

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	gomilter "github.com/d--j/go-milter"
)

// go-milter offers only a package variable for its warnings, so routing
// them is process-wide state whatever we do. It is assigned once (a second
// assignment while a milter runs would race with its reads); later calls
// of RouteMilterWarnings only swap the logger it forwards to. These two
// variables mirror go-milter's global and are the package's only mutable
// state.
var (
	milterLogOnce sync.Once
	milterLog     atomic.Pointer[slog.Logger]
)

// RouteMilterWarnings sends go-milter's warnings (a broken MTA connection,
// a protocol oddity) to log instead of the standard logger's stderr lines
// without level or fields. Call it from the command before any milter
// server runs; calling it again (tests run several commands in one
// process) only changes the logger. Start does not call it.
func RouteMilterWarnings(log *slog.Logger) {
	milterLog.Store(log.With("component", "milter"))
	milterLogOnce.Do(func() {
		gomilter.LogWarning = func(format string, v ...any) {
			milterLog.Load().Warn("go-milter: " + fmt.Sprintf(format, v...))
		}
	})
}
