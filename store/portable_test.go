package store

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSQLIsPortable keeps the store's SQL in the subset both backends run
// (see the package comment): code added later that slips into
// SQLite-only SQL fails here with the portable form, even where no test
// runs it on PostgreSQL. SQLite-only paths (the SQLite migrations and
// read-only open, reading SQLite's catalogue for `store copy`) are exempt
// from the rules that name them.
func TestSQLIsPortable(t *testing.T) {
	rules := []struct {
		re     *regexp.Regexp
		use    string
		exempt []string // files where the construct is SQLite-only on purpose
	}{
		{regexp.MustCompile(`(?i)\bINSERT\s+OR\s+(IGNORE|REPLACE)\b|\bREPLACE\s+INTO\b`), "INSERT ... ON CONFLICT (cols) DO NOTHING / DO UPDATE SET c = excluded.c", nil},
		{regexp.MustCompile(`(?i)\bPRAGMA\b|pragma_table_info`), "nothing: PostgreSQL has no PRAGMA", []string{"store.go", "readonly.go", "copy.go"}},
		// WITHOUT ROWID in a migration is fine: pgDDL drops it.
		{regexp.MustCompile(`(?i)\browid\b|sqlite_master`), "a primary key", []string{"copy.go", "rebind.go"}},
		{regexp.MustCompile(`(?i)\bIFNULL\s*\(`), "COALESCE", nil},
		{regexp.MustCompile(`(?i)\b(strftime|julianday|datetime|unixepoch)\s*\(`), "INTEGER unix seconds computed in Go (unix(), fromUnix())", nil},
		{regexp.MustCompile(`\bGLOB\b`), "LIKE", nil},
		{regexp.MustCompile(`LastInsertId\(`), "INSERT ... RETURNING col", nil},
		{regexp.MustCompile(`(?i)\bSUM\(\s*[a-z_]+\s*(=|!=|<>|<|>)`), "SUM(CASE WHEN cond THEN 1 ELSE 0 END): PostgreSQL sums no booleans", nil},
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if contains(r.exempt, f) {
				continue
			}
			for _, loc := range r.re.FindAllIndex(b, -1) {
				if withoutRowid.Match(b[max(0, loc[0]-12):loc[1]]) {
					continue
				}
				line := 1 + strings.Count(string(b[:loc[0]]), "\n")
				t.Errorf("%s:%d: %q is SQLite-only; use %s", f, line, b[loc[0]:loc[1]], r.use)
			}
		}
	}
}

var withoutRowid = regexp.MustCompile(`(?i)WITHOUT\s+ROWID$`)

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
