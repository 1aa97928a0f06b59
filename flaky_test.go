package keys_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A test that replaces a character of a key with a fixed one sends the
// real key whenever the key already had that character (1 run in 62 for a
// base62 checksum digit): flaky by construction. Such replacements go
// through changeLast, which excludes the original; this test finds any
// that do not, in every module's tests.
func TestNoFixedCharacterReplacements(t *testing.T) {
	// Built from parts so that this file does not match itself.
	fixed := regexp.MustCompile(`\[:len\([^()]*\)` + `\s*-\s*1\]\s*\+\s*"[0-9A-Za-z]"`)
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			if fixed.MatchString(line) {
				found = append(found, path+":"+itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("a key character replaced by a fixed one, which is sometimes the original (use changeLast):\n%s", strings.Join(found, "\n"))
	}
	// The check must be able to fail.
	if !fixed.MatchString(`bad := key[:len(key)-1]` + ` + "x"`) {
		t.Fatal("the pattern no longer finds a fixed replacement")
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
