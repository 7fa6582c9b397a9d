package layers

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/restrictedmail/restrictedmail/"

// The layers, innermost first. A package may import its own layer and the
// layers inside it, never one outside: adapters → core, never back.
var layers = []struct {
	name string
	pkgs []string
}{
	{"leaf parsers", []string{"address", "mailheader", "reply", "guard", "dsn"}},
	{"tokens", []string{"token"}},
	{"core", []string{"policy", "rewrite", "relay", "store", "store/storetest", "delivery", "dkimkey", "tokenops", "apikey", "notice", "bounce"}},
	{"configuration", []string{"config"}},
	{"adapters", []string{"milter", "lmtp", "metrics", "api", "web", "webhook", "postfixcheck"}},
	{"wiring", []string{"internal/generation", "daemon", "internal/dryrun", "internal/demo", "cmd/restrictedmail"}},
}

// configImporters are the only packages that may import config (outside
// tests): the command, the daemon, the generation that maps it onto the
// core, the dry run and the demo, and one test harness.
var configImporters = []string{
	"cmd/restrictedmail", "daemon", "internal/generation", "internal/dryrun", "internal/demo",
	"internal/dkimtest", // test keys in the [[dkim]] form tests write into configurations
}

// imports lists every package of the module with the module packages it
// imports, tests left out.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		deps[pkg] = nil
		for _, imp := range f[1:] {
			if rest, ok := strings.CutPrefix(imp, module); ok {
				deps[pkg] = append(deps[pkg], rest)
			}
		}
	}
	return deps
}

func layerOf(pkg string) int {
	for i, l := range layers {
		if slices.Contains(l.pkgs, pkg) {
			return i
		}
	}
	return -1
}

func TestLayering(t *testing.T) {
	deps := imports(t)
	for pkg, imps := range deps {
		from := layerOf(pkg)
		for _, imp := range imps {
			if imp == "config" && !slices.Contains(configImporters, pkg) {
				t.Errorf("%s imports config: only %v may; map the configuration onto the package's own options in internal/generation", pkg, configImporters)
			}
			to := layerOf(imp)
			if from < 0 || to < 0 {
				continue // test harnesses and tools (internal/...) are not layered
			}
			if to > from {
				t.Errorf("%s (%s) imports %s (%s): dependencies point inwards only", pkg, layers[from].name, imp, layers[to].name)
			}
		}
	}
	if got := deps["config"]; !slices.Equal(got, []string{"address"}) {
		t.Errorf("config imports %v; it may import only the leaf parser it validates with (address)", got)
	}
	for _, a := range []string{"milter", "lmtp", "api"} {
		for _, imp := range deps[a] {
			if imp == "milter" || imp == "lmtp" || imp == "api" {
				t.Errorf("adapter %s imports adapter %s", a, imp)
			}
		}
	}
	// Every package of the module is placed or known to be a harness.
	for pkg := range deps {
		if layerOf(pkg) < 0 && !strings.HasPrefix(pkg, "internal/") && pkg != "e2e" && pkg != "bench" {
			t.Errorf("package %s is in no layer: add it to the layers of this test and DEVELOPERS.md", pkg)
		}
	}
}
