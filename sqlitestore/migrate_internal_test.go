package sqlitestore

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// A file at migration 5, with a key and its idempotency entry, migrates
// to 6: the entry reads back naming its key, is still deleted with it,
// and an entry naming a webhook endpoint now goes in.
func TestMigrationSixKeepsEntries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Store{db: db, path: path}).migrateTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	r := storetest.NewRecord(t)
	created := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insertRecord(ctx, tx, "INSERT", r); err != nil {
		t.Fatal(err)
	}
	scope := store.Digest{1, 2, 3}
	if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_idempotency (scope, fingerprint, key_id, sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		scope[:], make([]byte, 32), r.ID, []byte("sealed"), created.UnixNano(), created.Add(24*time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if e, err := s.LookupIdempotency(ctx, scope, created); err != nil || e.KeyID != r.ID || string(e.Sealed) != "sealed" {
		t.Fatalf("the key's entry after migration 6: %+v, %v", e, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM api_key_idempotency WHERE key_id = ? AND endpoint_id IS NULL`, r.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the key's entry in the file: %d, %v", n, err)
	}
	// Neither owner, or both: refused by the check.
	for _, owners := range [][2]any{{nil, nil}, {r.ID, "we_x"}} {
		_, err := s.db.ExecContext(ctx, `INSERT INTO api_key_idempotency (scope, fingerprint, key_id, endpoint_id, sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 0, 0)`,
			make([]byte, 32), make([]byte, 32), owners[0], owners[1], []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "CHECK") {
			t.Fatalf("an entry owned by %v: %v, want the CHECK's refusal", owners, err)
		}
	}
	// The foreign key still deletes a key's entry with it.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE id = ?`, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM api_key_idempotency`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d entries left after their key was deleted (%v)", n, err)
	}
}
