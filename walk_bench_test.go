package keys_test

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// The walk benchmarks verify a different key each time, from a million
// stored, with usage counted: the traffic of many clients. Two cases:
//
//   - Distinct: a steady walk, each key used again about once a second
//     (its state in memory already; its last use noted again each pass);
//   - FirstUse: each key used for the first time since the last flush
//     (the case of many clients each calling now and then: the Manager
//     makes the key's state, notes it and counts it).
//
// Each runs serially and on both cores, beside a floor that walks the same
// keys in the same way: SHA-256 of the key, a Go map of every digest, the
// clock. Targets (issue 20): 1.3x the floor, serial and parallel.
//
// Every pass walks the keys in a fresh random order, as clients arrive:
// in the order they were stored (or first used), records and states would
// lie in memory in the order they are walked, which the processor's
// prefetching rewards and real traffic never does. Each pass's keys are
// copied, in that order, into one buffer for both sides, so reading the
// input costs them the same.

// walkKeys is how many keys the walks cover: 1,000,000, or
// KEYS_BENCH_DISTINCT.
func walkKeys() int {
	if n, err := strconv.Atoi(os.Getenv("KEYS_BENCH_DISTINCT")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// walkStore is a memstore whose background writes (last-used times, usage
// batches) are dropped: the walks flush between passes, off the clock,
// and what they measure is Verify and CountUsage, not a million-row
// write to memory.
type walkStore struct{ *memstore.Store }

func (walkStore) TouchLastUsed(context.Context, []store.LastUsed) error { return nil }
func (walkStore) AddUsage(context.Context, store.UsageBatch) error      { return nil }

// walk is the Manager holding walkKeys() keys on an injected clock, the
// keys (as strings, and as bytes for the floor) and the floor's map, made
// once per process.
var walk struct {
	m     *keys.Manager
	store *memstore.Store
	keys  []string // as stored
	ks    []string // this pass's order, for Verify
	bs    [][]byte // the same, for the floor
	t     map[[32]byte]*int
	rnd   *rand.Rand
	clock atomic.Int64 // ns after walkEpoch
}

var walkEpoch = time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)

func walkNow() time.Time { return walkEpoch.Add(time.Duration(walk.clock.Load())) }

func walkSetup(b *testing.B) {
	if walk.m != nil {
		return
	}
	n := walkKeys()
	ms := memstore.New()
	m, err := keys.New(walkStore{ms}, keys.WithMaxKeysPerAccount(10_000_000), keys.WithClock(walkNow))
	if err != nil {
		b.Fatal(err)
	}
	ks := make([]string, 0, n)
	batch := make([]keys.ImportKey, 0, 10000)
	for len(ks) < n {
		batch = batch[:0]
		for range min(10000, n-len(ks)) {
			c, err := keys.GenerateForBench(m)
			if err != nil {
				b.Fatal(err)
			}
			ks = append(ks, c)
			batch = append(batch, keys.ImportKey{Key: keys.Secret(c), Name: "bench", Environment: keys.Live, AccountID: "acct_" + strconv.Itoa(len(ks)%1000)})
		}
		if _, err := m.Import(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	walk.t = make(map[[32]byte]*int, n)
	for _, k := range ks {
		walk.t[sha256.Sum256([]byte(k))] = new(int)
	}
	walk.m, walk.store, walk.keys = m, ms, ks
	walk.rnd = rand.New(rand.NewPCG(1, 2))
	// One pass before any measurement: the Manager's tables of key states
	// grow to the keys in use once, as on a server that has been up a
	// while, and keep that size when idle keys are let go (forget). Which
	// walk runs first must not change what the other measures.
	shuffle(b)
	for i := range walk.ks {
		verifyCounted(b, i)
	}
	runtime.GC()
}

// shuffle puts the keys in a fresh random order for the next pass, copied
// into one buffer in that order (as bytes for the floor, and as a string
// for Verify). Off the clock.
func shuffle(*testing.B) {
	order := walk.rnd.Perm(len(walk.keys))
	buf := make([]byte, 0, len(walk.keys)*len(walk.keys[0]))
	for _, j := range order {
		buf = append(buf, walk.keys[j]...)
	}
	str := string(buf)
	walk.ks, walk.bs = make([]string, len(order)), make([][]byte, len(order))
	at := 0
	for i, j := range order {
		n := len(walk.keys[j])
		walk.ks[i], walk.bs[i] = str[at:at+n], buf[at:at+n:at+n]
		at += n
	}
}

// forget makes every key's next use its first since a flush: the clock
// moves two minutes, and three flushes drain the counters, find them
// empty, and let the keys' states go. Off the clock.
func forget(b *testing.B) {
	shuffle(b)
	for range 3 {
		walk.clock.Add(int64(2 * time.Minute))
		if err := walk.m.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	if n := keys.States(walk.m); n != 0 {
		b.Fatalf("%d states left after forgetting", n)
	}
	runtime.GC()
}

// nextSecond moves the clock a second and flushes: each key's next use is
// noted again, its state kept (made by a pass first, if need be). Off the
// clock.
func nextSecond(b *testing.B) {
	if keys.States(walk.m) < len(walk.ks) {
		for i := range walk.ks {
			verifyCounted(b, i)
		}
	}
	shuffle(b)
	walk.clock.Add(int64(time.Second))
	if err := walk.m.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	// The flush's garbage (a row per key) is collected off the clock too:
	// a host flushes every 10 s, not once a pass of a million requests,
	// so collecting it on the clock would charge each request 10 times
	// its share.
	runtime.GC()
}

// verifyCounted is one request of the walk: Verify, and its usage counted.
func verifyCounted(b *testing.B, i int) {
	v, err := walk.m.Verify(context.Background(), walk.ks[i], keys.OnAPI("GET /v1/ping"))
	if err != nil {
		b.Error(err)
		return
	}
	walk.m.CountUsage(&v, "GET /v1/ping", 200)
}

// floorOne is one request of the floor: SHA-256, the map, the clock.
func floorOne(i int) {
	if walk.t[sha256.Sum256(walk.bs[i])] == nil || time.Now().IsZero() {
		sinkBool.Store(true)
	}
}

// lookupOne is the store's share of a request: SHA-256 and memstore's
// LookupDigest, the clock; what Verify adds to it is the Manager's.
func lookupOne(i int) {
	if r, err := walk.store.LookupDigest(context.Background(), sha256.Sum256(walk.bs[i])); err != nil || r == nil || walkNow().IsZero() {
		sinkBool.Store(true)
	}
}

// serialWalk runs b.N requests over the keys in order; between passes
// (and before the first) it calls between, off the clock.
func serialWalk(b *testing.B, between func(*testing.B), one func(int)) {
	walkSetup(b)
	between(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		one(i)
		if i++; i == len(walk.ks) {
			i = 0
			b.StopTimer()
			between(b)
			b.StartTimer()
		}
	}
}

// parallelWalk runs b.N requests on GOMAXPROCS goroutines, in rounds of
// at most one pass, each goroutine walking its own stretch of the keys;
// before each round it calls between, off the clock.
func parallelWalk(b *testing.B, between func(*testing.B), one func(int)) {
	walkSetup(b)
	procs := runtime.GOMAXPROCS(0)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		round := min(b.N-done, len(walk.ks))
		b.StopTimer()
		between(b)
		b.StartTimer()
		var wg sync.WaitGroup
		for p := range procs {
			from, to := round*p/procs, round*(p+1)/procs
			wg.Go(func() {
				for i := from; i < to; i++ {
					one(i)
				}
			})
		}
		wg.Wait()
		done += round
	}
}

// reorder is the floors' between: a fresh order, as for the Manager.
func reorder(b *testing.B) {
	shuffle(b)
	runtime.GC()
}

func BenchmarkVerifyDistinctFloor(b *testing.B) { serialWalk(b, reorder, floorOne) }
func BenchmarkVerifyDistinct(b *testing.B) {
	serialWalk(b, nextSecond, func(i int) { verifyCounted(b, i) })
}
func BenchmarkVerifyDistinctParallelFloor(b *testing.B) { parallelWalk(b, reorder, floorOne) }
func BenchmarkVerifyDistinctParallel(b *testing.B) {
	parallelWalk(b, nextSecond, func(i int) { verifyCounted(b, i) })
}

func BenchmarkVerifyFirstUseFloor(b *testing.B) { serialWalk(b, reorder, floorOne) }
func BenchmarkVerifyFirstUse(b *testing.B) {
	serialWalk(b, forget, func(i int) { verifyCounted(b, i) })
}
func BenchmarkVerifyFirstUseParallelFloor(b *testing.B) { parallelWalk(b, reorder, floorOne) }
func BenchmarkVerifyFirstUseParallel(b *testing.B) {
	parallelWalk(b, forget, func(i int) { verifyCounted(b, i) })
}

// The store's share, for reading the figures above: what memstore's
// lookup costs on the same walk (not a target; see docs/performance.md).
func BenchmarkVerifyDistinctLookup(b *testing.B) { serialWalk(b, reorder, lookupOne) }
func BenchmarkVerifyDistinctLookupParallel(b *testing.B) {
	parallelWalk(b, reorder, lookupOne)
}
