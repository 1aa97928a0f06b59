package sqlitestore_test

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txcloud/keys/sqlitestore"
	"github.com/txcloud/keys/store"
	_ "modernc.org/sqlite"
)

// crashChild is the process TestKillDuringWrites kills: it streams
// creates, revocations and rolls into the store at the path in
// SQLITESTORE_CRASH_CHILD, printing each one after its Write returned.
func crashChild(path string, first int) {
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	var live []*store.Record
	for i := first; ; i++ {
		r := &store.Record{ID: fmt.Sprintf("key_%06d", i), AccountID: "acct_crash", Name: "crash", Prefix: "txc_test_abcd",
			Environment: "test", Permissions: []string{"identity:read"}, CreatedAt: base.Add(time.Duration(i) * time.Millisecond), Version: 1}
		_, _ = crand.Read(r.Digest[:])
		switch {
		case i%5 == 3 && len(live) > 0: // revoke the oldest live key
			old := live[0]
			next := old.Clone()
			next.RevokedAt, next.Version = r.CreatedAt, old.Version+1
			if err := s.Write(ctx, store.Write{Replace: next}); err != nil {
				fmt.Println("revoke:", err)
				os.Exit(2)
			}
			live = live[1:]
			fmt.Fprintf(w, "R %s\n", old.ID)
		case i%5 == 4 && len(live) > 0: // roll it: successor and scheduled revocation together
			old := live[0]
			next := old.Clone()
			next.RevokedAt, next.Version = r.CreatedAt.Add(time.Hour), old.Version+1
			if err := s.Write(ctx, store.Write{Replace: next, Insert: r}); err != nil {
				fmt.Println("roll:", err)
				os.Exit(2)
			}
			live = append(live[1:], r)
			fmt.Fprintf(w, "L %s %s\n", old.ID, r.ID)
		default:
			if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
				fmt.Println("create:", err)
				os.Exit(2)
			}
			live = append(live, r)
			fmt.Fprintf(w, "C %s\n", r.ID)
		}
		w.Flush() // only after the Write returned
	}
}

var base = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func TestMain(m *testing.M) {
	if path := os.Getenv("SQLITESTORE_CRASH_CHILD"); path != "" {
		first, _ := strconv.Atoi(os.Getenv("SQLITESTORE_CRASH_FIRST"))
		crashChild(path, first)
		return
	}
	os.Exit(m.Run())
}

// kill -9 of a process in the middle of a stream of creates, revocations
// and rolls, three times over on one file: after each, every Write that
// returned is in the file, no roll is half-written (a successor without
// its predecessor's revocation, or the reverse), the file passes its
// integrity check, and the per-account counts match the rows.
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process three times")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	seen := map[string]string{}  // id: what a returned Write did to it
	rolls := map[string]string{} // successor: predecessor
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), "SQLITESTORE_CRASH_CHILD="+path, "SQLITESTORE_CRASH_FIRST="+strconv.Itoa(round*1_000_000))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		lines := 0
		killAt := 150 + rand.IntN(150)
		// live mirrors the child's list: its next revoke or roll takes the
		// first, so the one Write the kill may interrupt after its commit
		// and before its report can only have revoked that key.
		var live []string
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch f[0] {
			case "C":
				seen[f[1]] = "created"
				live = append(live, f[1])
			case "R":
				seen[f[1]] = "revoked"
				live = live[1:]
			case "L":
				seen[f[1]], seen[f[2]] = "rolled", "created"
				rolls[f[2]] = f[1]
				live = append(live[1:], f[2])
			default:
				t.Fatalf("child: %s", sc.Text())
			}
			if lines++; lines == 10 && round == 0 {
				// Another process holds the file: this one may not open it.
				if s, err := sqlitestore.Open(ctx, path); !errors.Is(err, sqlitestore.ErrLocked) {
					if s != nil {
						_ = s.Close(ctx)
					}
					t.Fatalf("opening a file another process is writing: %v, want ErrLocked", err)
				}
			}
			if lines == killAt {
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // somewhere inside a later Write
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		_ = cmd.Wait()
		if lines < killAt {
			t.Fatalf("round %d: the child stopped after %d writes", round, lines)
		}

		s, err := sqlitestore.Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		for id, what := range seen {
			r, err := s.Get(ctx, id)
			if err != nil {
				t.Fatalf("round %d: %s (%s by a Write that returned) is missing: %v", round, id, what, err)
			}
			if got, err := s.LookupDigest(ctx, r.Digest); err != nil || got.ID != id {
				t.Fatalf("round %d: %s not found by digest after reopening: %v", round, id, err)
			}
			if what == "created" && !r.RevokedAt.IsZero() && len(live) > 0 && id == live[0] {
				// The Write in flight at the kill revoked (or rolled) it and
				// committed, but was killed before it could report.
				t.Logf("round %d: %s was revoked by the Write the kill interrupted after its commit", round, id)
				seen[id] = "revoked"
				continue
			}
			if (what == "created") != r.RevokedAt.IsZero() {
				t.Fatalf("round %d: %s was %s, but its revoked_at is %v", round, id, what, r.RevokedAt)
			}
		}
		all, err := s.List(ctx, store.ListQuery{AccountID: "acct_crash", Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]*store.Record{}
		for _, r := range all {
			byID[r.ID] = r
		}
		// Every successor in the file, reported or not: its predecessor
		// is revoked (scheduled).
		for id, r := range byID {
			if pred, ok := rolls[id]; ok && byID[pred].RevokedAt.IsZero() {
				t.Fatalf("round %d: successor %s is stored but %s is not revoked: a half-written roll", round, id, pred)
			}
			if _, ok := seen[id]; !ok {
				t.Logf("round %d: %s was written but its Write never reported (killed before it could print)", round, r.ID)
			}
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		var wrong int
		err = db.QueryRow(`SELECT count(*) FROM (SELECT account_id, sum(revoked_at IS NULL) AS a, sum(revoked_at IS NOT NULL) AS r FROM api_keys GROUP BY account_id) AS k
JOIN api_key_counts AS c USING (account_id) WHERE k.a <> c.active OR k.r <> c.revoked`).Scan(&wrong)
		db.Close()
		if err != nil || wrong != 0 {
			t.Fatalf("round %d: %d accounts' counts differ from their rows (%v)", round, wrong, err)
		}
		t.Logf("round %d: killed after %d reported writes; %d records in the file, all present", round, lines, len(byID))
	}
}
