package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// startOnFile runs the demo on an SQLite file and returns its address and
// the line it printed on stdout.
func startOnFile(t *testing.T, db string, args ...string) (base, line string, stop func()) {
	t.Helper()
	base, line, _, stopDemo := launch(t, append([]string{"--store", "sqlite", "--db", db}, args...)...)
	return base, line, func() {
		if err := stopDemo(); err != nil {
			t.Errorf("demo stopped with %v", err)
		}
	}
}

// --store sqlite: a new file gets a bootstrap key; after a restart on the
// same file no new one is issued and every key created before still
// works; --new-bootstrap-key issues one anyway; a second demo on the same
// file, while the first runs, refuses to start.
func TestSQLiteRestart(t *testing.T) {
	db := filepath.Join(t.TempDir(), "keys.db")
	base, line, stop := startOnFile(t, db)
	bootstrap, ok := strings.CutPrefix(line, "bootstrap key: ")
	if !ok {
		t.Fatalf("a new file: stdout %q, want a bootstrap key", line)
	}
	resp, created := call(t, "POST", base+"/v1/developers/keys", bootstrap,
		`{"name":"made before the restart","environment":"test","permissions":["identity:read"]}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	key := created["key"].(string)
	if err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--store", "sqlite", "--db", db}, &syncBuffer{}, &syncBuffer{}, nil); err == nil ||
		!strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second demo on the same file: %v, want it refused", err)
	}
	stop()

	base, line, stop = startOnFile(t, db)
	if !strings.HasPrefix(line, "no new bootstrap key: ") || strings.Contains(line, "txc_") {
		t.Fatalf("a file holding acct_demo's keys: stdout %q, want no new key", line)
	}
	for _, k := range []string{bootstrap, key} {
		if resp, who := call(t, "GET", base+"/v1/whoami", k, ""); resp.StatusCode != 200 {
			t.Fatalf("a key made before the restart: %d %v", resp.StatusCode, who)
		}
	}
	stop()

	base, line, stop = startOnFile(t, db, "--new-bootstrap-key")
	defer stop()
	again, ok := strings.CutPrefix(line, "bootstrap key: ")
	if !ok || again == bootstrap {
		t.Fatalf("--new-bootstrap-key: stdout %q", line)
	}
	if resp, who := call(t, "GET", base+"/v1/whoami", again, ""); resp.StatusCode != 200 {
		t.Fatalf("the new bootstrap key: %d %v", resp.StatusCode, who)
	}
}
