package sqlitestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/txcloud/keys/sqlitestore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

func open(t testing.TB, path string) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "keys.db"))
	})
}

// Everything written is there after a reopen, from the file: records
// (LookupDigest's memory index is rebuilt), their last use, revocations,
// and idempotency entries; and reopening migrates nothing twice.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r := storetest.NewRecord(t)
	if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
		t.Fatal(err)
	}
	gone := storetest.NewRecord(t)
	gone.AccountID = r.AccountID
	if err := s.Write(ctx, store.Write{Insert: gone}); err != nil {
		t.Fatal(err)
	}
	next := gone.Clone()
	next.RevokedAt, next.Version = next.CreatedAt, next.Version+1
	if err := s.Write(ctx, store.Write{Replace: next}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: r.ID, At: r.CreatedAt.Add(1)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, sqlitestore.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	for range 2 {
		s := open(t, path)
		got, err := s.LookupDigest(ctx, r.Digest)
		if err != nil {
			t.Fatalf("after reopening, the key is not found by digest: %v", err)
		}
		if d := storetest.Equal(got, r); d != "" && got.LastUsed.IsZero() {
			t.Fatalf("after reopening: %s", d)
		}
		g, err := s.Get(ctx, r.ID)
		if err != nil || !g.LastUsed.Equal(r.CreatedAt.Add(1)) {
			t.Fatalf("after reopening, last used %v (%v)", g.LastUsed, err)
		}
		rv, err := s.LookupDigest(ctx, gone.Digest)
		if err != nil || !rv.RevokedAt.Equal(gone.CreatedAt) {
			t.Fatalf("after reopening, the revocation: %v (%v)", rv.RevokedAt, err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A second store on the same file, in this process or another, is
// refused while the first is open, and opens once it is closed.
func TestOneStorePerFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitestore.Open(ctx, path); !errors.Is(err, sqlitestore.ErrLocked) {
		t.Fatalf("a second store on an open file: %v, want ErrLocked", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	open(t, path)
}

// A file that is not a database, or a damaged one, is a clear error,
// never an empty store.
func TestBadFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("this is not a database, and it is long enough to have a header of its own........................................"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitestore.Open(ctx, junk); err == nil {
		t.Fatal("a file that is not a database opened")
	} else {
		t.Log(err)
	}

	// A real store whose pages are then overwritten in the middle.
	path := filepath.Join(dir, "keys.db")
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if err := s.Write(ctx, store.Write{Insert: storetest.NewRecord(t)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	garbage := make([]byte, 8192)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	if _, err := f.WriteAt(garbage, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s, err := sqlitestore.Open(ctx, path); err == nil {
		s.Close(ctx)
		t.Fatal("a damaged file opened")
	} else {
		t.Log(err)
	}
	if _, err := sqlitestore.Open(ctx, ""); err == nil {
		t.Fatal("an empty path opened")
	}
}
