package postfixtest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// watchdogScript stops an instance whose test binary died without running
// its cleanups: a test timeout panics and exits, and a killed process runs
// nothing at all, but either way the kernel closes the pipe whose other end
// is the script's stdin. A normal cleanup writes "done" first.
//
// Arguments: postfix, master, postsuper, config dir, queue dir, root.
const watchdogScript = `
read -r line
[ "$line" = done ] && exit 0
"$3" -c "$4" -d ALL >/dev/null 2>&1
"$1" -c "$4" abort >/dev/null 2>&1
n=0
while [ $n -lt 100 ] && ! "$2" -c "$4" -t 2>/dev/null; do sleep 0.1; n=$((n+1)); done
if ! "$2" -c "$4" -t 2>/dev/null; then
	pid=$(cat "$5/pid/master.pid") && kill -9 -$pid
fi
rm -rf "$6"
`

// watchdog is a shell process, in its own session so that a ^C aimed at
// the test does not kill it first, that waits on a pipe from the test.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File // close-on-exec: no other child keeps the pipe open
}

func startWatchdog(bin tools, l layout) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "postfixtest-watchdog",
		bin.postfix, bin.master, bin.postsuper, l.configDir, l.queueDir, l.root)
	cmd.Stdin = r
	cmd.Env = withoutEnv(os.Environ(), "MAIL_CONFIG")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, w: w}, nil
}

// dismiss tells the watchdog that the test cleaned up after itself.
func (wd *watchdog) dismiss() error {
	_, werr := wd.w.WriteString("done\n")
	cerr := wd.w.Close()
	if err := wd.cmd.Wait(); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("dismissing watchdog: %w", werr)
	}
	return cerr
}
