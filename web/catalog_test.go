package web

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCatalogComplete: every key is in both languages, and every key the
// templates and the code ask for is in the catalog.
func TestCatalogComplete(t *testing.T) {
	for lang, cat := range catalog {
		for other, ocat := range catalog {
			for k := range cat {
				if _, ok := ocat[k]; !ok {
					t.Errorf("%q is in %s but not in %s", k, lang, other)
				}
			}
		}
		for k, v := range cat {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s %q is empty", lang, k)
			}
			if en := catalog["en"][k]; strings.Count(v, "%") != strings.Count(en, "%") {
				t.Errorf("%s %q has other format verbs than English", lang, k)
			}
		}
	}
	prefixes := map[string]bool{}
	for k := range catalog["en"] {
		p, _, _ := strings.Cut(k, ".")
		prefixes[p] = true
	}
	used := map[string]bool{}
	// Templates: {{.T "key"}}, {{$.T "key"}}.
	tmplKey := regexp.MustCompile(`\.T "([^"]+)"`)
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(templateFS, path)
		for _, m := range tmplKey.FindAllStringSubmatch(string(data), -1) {
			used[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Code: string literals that look like keys ("issue.err.ttl").
	codeKey := regexp.MustCompile(`"([a-z]+(?:\.[a-z]+)+)"`)
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range codeKey.FindAllStringSubmatch(string(data), -1) {
			if p, _, _ := strings.Cut(m[1], "."); prefixes[p] && !strings.Contains(f, "catalog") {
				used[m[1]] = true
			}
		}
	}
	for _, single := range []string{"yes", "no", "never", "anyone", "cancel"} {
		used[single] = true
	}
	var missing []string
	for k := range used {
		if _, ok := catalog["en"][k]; !ok {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("keys used but not in the catalog: %v", missing)
	}
	if len(used) < 100 {
		t.Errorf("found only %d keys in use: the scan is broken", len(used))
	}
	// And nothing in the catalog is dead.
	for k := range catalog["en"] {
		if !used[k] {
			t.Errorf("catalog key %q is never used", k)
		}
	}
}
