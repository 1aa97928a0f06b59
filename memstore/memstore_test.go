package memstore_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/internal/latency"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New() })
}

func BenchmarkLookupDigest(b *testing.B) {
	s := memstore.New()
	var hs []store.Digest
	for range 100_000 {
		r := storetest.NewRecord(b)
		hs = append(hs, r.Digest)
		if err := s.Write(context.Background(), store.Write{Insert: r}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
}

// Tables grow by doubling while readers search them without locks: every
// record stays findable, and absent digests end their probe.
func TestGrowthUnderConcurrentReads(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	var hs []store.Digest
	for range 100 {
		r := storetest.NewRecord(t)
		hs = append(hs, r.Digest)
		if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20_000 {
			if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
				t.Error("a record went missing while the table grew")
				return
			}
		}
	}()
	for range 5_000 {
		r := storetest.NewRecord(t)
		h := r.Digest
		if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupDigest(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	var absent store.Digest
	for i := range 1000 {
		absent[0], absent[8], absent[9] = byte(i), byte(i>>8), 0xAA
		if _, err := s.LookupDigest(ctx, absent); err != keys.ErrNotFound {
			t.Fatalf("absent digest: %v", err)
		}
	}
}

// fill gives account acct n records, created a millisecond apart.
func fill(t testing.TB, s *memstore.Store, acct string, n int) {
	t.Helper()
	base := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		r := storetest.NewRecord(t)
		r.AccountID = acct
		r.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
		if err := s.Write(context.Background(), store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
}

// median runs f n times and returns its median duration.
func median(n int, f func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		f()
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds[n/2]
}

// One tenant's keys cost another tenant's List nothing: B lists as fast
// with A holding 100,000 keys as with A holding none, and A's own pages
// seek to their cursor instead of scanning.
func TestListCostIndependentOfOtherTenants(t *testing.T) {
	if testing.Short() || buildtag.Race || buildtag.Mutation {
		t.Skip("a timing test, run without -race and -short (.ci/run does)")
	}
	ctx := context.Background()
	s := memstore.New()
	fill(t, s, "acct_b", 30)
	listB := func() {
		if rs, err := s.List(ctx, store.ListQuery{AccountID: "acct_b", Limit: 21}); err != nil || len(rs) != 21 {
			t.Fatalf("B's list: %d, %v", len(rs), err)
		}
	}
	alone := median(501, listB)
	fill(t, s, "acct_a", 100_000)
	beside := median(501, listB)
	// A's page deep in its keys, by cursor.
	mid, err := s.List(ctx, store.ListQuery{AccountID: "acct_a", Limit: 50_000})
	if err != nil || len(mid) != 50_000 {
		t.Fatal(err)
	}
	cursor := &store.ListPosition{CreatedAt: mid[len(mid)-1].CreatedAt, ID: mid[len(mid)-1].ID}
	deep := median(501, func() {
		if rs, err := s.List(ctx, store.ListQuery{AccountID: "acct_a", Limit: 21, After: cursor}); err != nil || len(rs) != 21 {
			t.Fatalf("A's deep page: %d, %v", len(rs), err)
		}
	})
	t.Logf("B's page: %v with A empty, %v with A at 100,000 keys; A's page past 50,000 of its keys: %v", alone, beside, deep)
	// 1.5x, plus a microsecond for the timer's own grain.
	if beside > alone*3/2+time.Microsecond {
		t.Fatalf("B's list went from %v to %v when A grew to 100,000 keys", alone, beside)
	}
	if deep > 4*beside+5*time.Microsecond {
		t.Fatalf("A's page at a cursor costs %v, against %v for a first page of B's: it scans", deep, beside)
	}
}

// maxWait runs work in the background and meanwhile measures, over and
// over, how long another tenant's insert waits. It does so three times and
// returns the smallest of the three longest waits, with how long that
// run's work took: noise (a preempted goroutine, a GC pause) only adds.
func maxWait(t *testing.T, s *memstore.Store, work func()) (wait, took time.Duration) {
	wait = time.Hour
	for range 3 {
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); work() }()
		var worst time.Duration
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			r := storetest.NewRecord(t)
			r.AccountID = "acct_other"
			begin := time.Now()
			if err := s.Write(context.Background(), store.Write{Insert: r}); err != nil {
				t.Fatal(err)
			}
			worst = max(worst, time.Since(begin))
			time.Sleep(50 * time.Microsecond)
		}
		if worst < wait {
			wait, took = worst, time.Since(start)
		}
	}
	return wait, took
}

// A last-used flush of 100,000 keys never holds the store's lock for
// long: another tenant's writes wait for one chunk at most, where they
// used to wait for the whole flush. The chunk itself takes well under a
// millisecond; on this 2-core machine the scheduler alone can add 10-20 ms
// (a preempted goroutine), so the bound is a quarter of the flush, which
// the old code, holding the lock throughout, could not meet.
func TestFlushHoldsNoLongLock(t *testing.T) {
	if testing.Short() || buildtag.Race || buildtag.Mutation {
		t.Skip("a timing test, run without -race and -short (.ci/run does)")
	}
	ctx := context.Background()
	s := memstore.New()
	fill(t, s, "acct_a", 100_000)
	rs, err := s.List(ctx, store.ListQuery{AccountID: "acct_a", Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC)
	wait, took := maxWait(t, s, func() {
		at = at.Add(time.Second) // each run moves every key's last use
		batch := make([]store.LastUsed, len(rs))
		for i, r := range rs {
			batch[i] = store.LastUsed{ID: r.ID, At: at}
		}
		if err := s.TouchLastUsed(ctx, batch); err != nil {
			t.Error(err)
		}
	})
	t.Logf("a flush of 100,000 last-used times took %v; another tenant's insert waited at most %v", took, wait)
	if wait > took/4 {
		t.Fatalf("another tenant waited %v during a %v flush: the flush holds the lock", wait, took)
	}
}

// Finding 2 of issue 11, end to end through a Manager: tenant B's verify,
// create and list cost the same whether tenant A holds 1,000 keys or
// 100,000, idle or paging through them at its management limit (1,000
// pages a second). Before the per-account index, each of A's lists scanned
// every tenant under the store's lock: B's create waited behind it, and
// over HTTP B's verify p99 went from 0.6 ms to 77 ms.
func TestTenantLatencyWhileAnotherListsItsKeys(t *testing.T) {
	if testing.Short() || buildtag.Race || buildtag.Mutation {
		t.Skip("a timing test, run without -race and -short (.ci/run does)")
	}
	ctx := context.Background()
	// Two stores, A at 1,000 keys in one and at 100,000 in the other, so
	// their windows can alternate: the machine's state (another package's
	// tests, the CPU's clock, a GC) drifts over seconds, and a baseline
	// measured before the fill and compared after it failed on that drift
	// (B's create p50 at 5.6 µs, then 13.9 µs idle and 6.2 µs while A
	// listed, in one run).
	type tenantB struct {
		s   *memstore.Store
		m   *keys.Manager
		key string
	}
	setup := func(aKeys int) tenantB {
		s := memstore.New()
		m, err := keys.New(s, keys.WithMaxKeysPerAccount(1_000_000))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(ctx) })
		kb, err := m.Create(ctx, keys.APIKeyCreate{Name: "b", Environment: keys.Test, AccountID: "acct_b"})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s, "acct_a", aKeys)
		return tenantB{s, m, string(kb.Key)}
	}
	small, big := setup(1_000), setup(100_000)
	// window runs B's traffic (a verify, a create and a list, then a
	// pause) for 150 ms and at least latency.MinRuns rounds, and returns
	// each operation's p50 and p99. The pause is ~1 ms on these machines,
	// so 150 ms alone is ~140 rounds, and fewer when the machine is busy:
	// a CI run had a window so short that its p99 was its p50 (create at
	// 9.4µs/9.4µs), and best's minimum then set a baseline no full window
	// could meet.
	window := func(b tenantB) (p [3][2]time.Duration) {
		var ds [3][]time.Duration
		ops := []func(){
			func() {
				if _, err := b.m.Verify(ctx, b.key); err != nil {
					t.Fatal(err)
				}
			},
			func() {
				if _, err := b.m.Create(ctx, keys.APIKeyCreate{Name: "b", Environment: keys.Test, AccountID: "acct_b"}); err != nil {
					t.Fatal(err)
				}
			},
			func() {
				if _, err := b.m.List(ctx, keys.ListFilter{AccountID: "acct_b"}); err != nil {
					t.Fatal(err)
				}
			},
		}
		end := time.Now().Add(150 * time.Millisecond)
		for n := 0; n < latency.MinRuns || time.Now().Before(end); n++ {
			for i, op := range ops {
				start := time.Now()
				op()
				ds[i] = append(ds[i], time.Since(start))
			}
			time.Sleep(50 * time.Microsecond)
		}
		for i := range ds {
			slices.Sort(ds[i])
			p[i] = [2]time.Duration{ds[i][len(ds[i])/2], ds[i][len(ds[i])*99/100]}
		}
		return p
	}
	// best keeps the smaller of each figure over rounds: noise only adds.
	best := func(acc *[3][2]time.Duration, p [3][2]time.Duration) {
		for i := range p {
			for j := range p[i] {
				if acc[i][j] == 0 || p[i][j] < acc[i][j] {
					acc[i][j] = p[i][j]
				}
			}
		}
	}
	lister := func(stop <-chan struct{}, pages *int) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var after *store.ListPosition
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rs, err := big.s.List(ctx, store.ListQuery{AccountID: "acct_a", Limit: 100, After: after})
			if err != nil {
				t.Error(err)
				return
			}
			*pages++
			after = nil
			if len(rs) == 100 {
				after = &store.ListPosition{CreatedAt: rs[99].CreatedAt, ID: rs[99].ID}
			}
		}
	}

	var few, idle, listing [3][2]time.Duration
	pages := 0
	for range 5 {
		best(&few, window(small))
		best(&idle, window(big))
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { defer close(done); lister(stop, &pages) }()
		best(&listing, window(big))
		close(stop)
		<-done
	}
	names := []string{"verify", "create", "list"}
	for i, n := range names {
		t.Logf("B's %-6s p50/p99: A at 1,000 keys %v/%v; at 100,000 idle %v/%v; listing %v/%v", n,
			few[i][0], few[i][1], idle[i][0], idle[i][1], listing[i][0], listing[i][1])
	}
	if pages < 200 {
		t.Fatalf("A listed only %d pages", pages)
	}
	// 2x plus 10 µs at the median: B's create has two medians on these
	// machines, 5-6 µs or 12-14 µs a window (the CPU's state after the
	// pause, whatever A holds; it is 5 µs in most windows where A lists),
	// and a 1.5x bound failed between them. At p99, where a preemption by
	// A's lister on two cores lands, 2x plus 100 µs (create's p99 while A
	// lists reached 76 µs against an idle 24 µs in a passing CI run).
	// Both are far below what the bug cost: a list scanning A's keys
	// under the lock took 12-45 ms, and B's create p99 868 µs here.
	for i, n := range names {
		for j, q := range []string{"p50", "p99"} {
			slack := func(d time.Duration) time.Duration {
				if j == 0 {
					return d*2 + 10*time.Microsecond
				}
				return d*2 + 100*time.Microsecond
			}
			if idle[i][j] > slack(few[i][j]) {
				t.Errorf("B's %s %s went from %v to %v when A grew from 1,000 to 100,000 keys", n, q, few[i][j], idle[i][j])
			}
			if listing[i][j] > slack(idle[i][j]) {
				t.Errorf("B's %s %s went from %v to %v while A listed its 100,000 keys", n, q, idle[i][j], listing[i][j])
			}
		}
	}
}

// Each account keeps its newest LogWindow entries, whatever another adds.
func TestLogWindowPerAccount(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	at := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	var es []reqlog.Entry
	for i := range memstore.LogWindow + 50 {
		es = append(es, reqlog.Entry{RequestID: fmt.Sprintf("req_%06d", i), Timestamp: at.Add(time.Duration(i) * time.Millisecond), AccountID: "acct_flood"})
	}
	es = append(es, reqlog.Entry{RequestID: "req_quiet", Timestamp: at, AccountID: "acct_quiet"})
	if _, err := s.AddLogs(ctx, store.LogBatch{ID: "b1", Entries: es, MaxPerDay: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	n := 0
	q := store.LogQuery{AccountID: "acct_flood", Limit: 101}
	for {
		got, err := s.Logs(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		n += len(got)
		if len(got) < q.Limit {
			if last := got[len(got)-1].RequestID; last != "req_000050" {
				t.Fatalf("the oldest kept is %s, want req_000050", last)
			}
			break
		}
		q.After = &store.LogCursor{Timestamp: got[len(got)-1].Timestamp, RequestID: got[len(got)-1].RequestID}
	}
	if n != memstore.LogWindow {
		t.Fatalf("the flooding account keeps %d, want %d", n, memstore.LogWindow)
	}
	if got, err := s.Logs(ctx, store.LogQuery{AccountID: "acct_quiet", Limit: 10}); err != nil || len(got) != 1 {
		t.Fatalf("the quiet account: %v %v", got, err)
	}
}
