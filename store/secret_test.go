package store

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tok "github.com/restrictedmail/restrictedmail/token"
)

// TestTokensStoredAsHashes: the database and its WAL hold the token's
// SHA-256, never the token; a lookup finds it by hash in any case, and
// nothing that merely shares a prefix with it.
func TestTokensStoredAsHashes(t *testing.T) {
	t.Parallel()
	db, path := open(t)
	r, secret := newRecord(1)
	add(t, db, r)
	for _, f := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ToLower(data), []byte(secret)) {
			t.Errorf("%s holds the token in clear", filepath.Base(f))
		}
	}
	ctx := context.Background()
	if _, err := db.TokenByHash(ctx, tok.HashOf(strings.ToUpper(secret))); err != nil {
		t.Errorf("lookup in upper case: %v", err)
	}
	for _, guess := range []string{secret[:31], secret + "a", secret[1:], ""} {
		if _, err := db.TokenByHash(ctx, tok.HashOf(guess)); !errors.Is(err, tok.ErrNotFound) {
			t.Errorf("lookup of %q: %v, want not found", guess, err)
		}
	}
}

// TestTokenComparisonsAreConstantTime keeps the constant-time comparison
// from being refactored away. SQLite finds the row by the hash (an index
// lookup whose timing can only tell how much of the SHA-256 of a guess
// matches a stored hash, which says nothing about a token); the match is
// then confirmed with token.Hash.Equal, which must use
// crypto/subtle.ConstantTimeCompare.
func TestTokenComparisonsAreConstantTime(t *testing.T) {
	t.Parallel()
	calls := func(file, fn string) []string {
		fs := token.NewFileSet()
		f, err := parser.ParseFile(fs, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != fn {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
						if x, ok := sel.X.(*ast.Ident); ok {
							out = append(out, x.Name+"."+sel.Sel.Name)
						} else {
							out = append(out, "."+sel.Sel.Name)
						}
					}
				}
				return true
			})
		}
		return out
	}
	has := func(list []string, want string) bool {
		for _, s := range list {
			if strings.HasSuffix(s, want) {
				return true
			}
		}
		return false
	}
	if c := calls("../token/token.go", "Equal"); !has(c, "subtle.ConstantTimeCompare") {
		t.Errorf("token.Hash.Equal calls %v, not subtle.ConstantTimeCompare", c)
	}
	if c := calls("tokens.go", "TokenByHash"); !has(c, ".Equal") {
		t.Errorf("TokenByHash calls %v: the match is not confirmed with Hash.Equal", c)
	}
}
