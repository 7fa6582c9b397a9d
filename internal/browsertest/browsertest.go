// Package browsertest is a test harness: Debian's Chromium, headless,
// driven by chromedp, for the tests that look at the web page in a real
// browser (e2e's whole flow, web's pages), and where their screenshots go.
// Test harnesses only: chromedp never reaches the binary.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// Path is Debian's Chromium.
	Path    = "/usr/bin/chromium"
	install = "apt-get install -y chromium"
)

// Require fails under CI, and skips elsewhere, without Debian's Chromium,
// naming the command that installs it.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no %s; install it with:\n  %s", Path, install)
	}
	t.Skipf("no %s; install it with:\n  %s", Path, install)
}

// Screenshots is where a browser test saves a PNG of each page:
// $RESTRICTEDMAIL_SCREENSHOTS, or the test's artifact directory
// (go test -artifacts keeps it).
func Screenshots(t testing.TB) string {
	if dir := os.Getenv("RESTRICTEDMAIL_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.ArtifactDir()
}

// Start starts a headless Chromium for the test, a desktop window of
// 1100×900, gone when the test ends.
func Start(t testing.TB) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// Shot saves a full-page screenshot of what ctx's tab shows as
// dir/name.png.
func Shot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Do runs steps in ctx's tab; the test fails, naming what, when one does.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Text is the text of the first element sel selects in ctx's tab.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}
