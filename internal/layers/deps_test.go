package layers

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestTestOnlyDependencies: kin-openapi (which checks the API's traffic
// against api/openapi.yaml) is for tests; the binary never links it.
func TestTestOnlyDependencies(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", "../../cmd/restrictedmail").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/getkin/kin-openapi") || strings.HasSuffix(pkg, "/internal/apitest") {
			t.Errorf("the binary depends on %s, a test-only package", pkg)
		}
	}
}
