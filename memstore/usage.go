package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/txcloud/keys"
)

var _ keys.UsageStore = (*Store)(nil)

// usage is the store's usage counts, behind a lock of their own (a flush
// never holds up a key's lookup or write).
type usage struct {
	mu      sync.Mutex
	counts  map[string]map[usageKey]*keys.UsageCounts // by account
	batches map[string]time.Time                      // batch IDs added, for 7 days
	swept   time.Time
}

type usageKey struct {
	gran       keys.Granularity
	bucket     int64 // Unix seconds
	keyID, api string
}

// batchMemory is how long an added batch's ID is remembered.
const batchMemory = 7 * 24 * time.Hour

// MinuteRetention is how long minute buckets are kept; hours and days are
// kept for good.
const MinuteRetention = 48 * time.Hour

// AddUsage implements keys.UsageStore.
func (s *Store) AddUsage(_ context.Context, b keys.UsageBatch) error {
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.counts == nil {
		u.counts = make(map[string]map[usageKey]*keys.UsageCounts)
		u.batches = make(map[string]time.Time)
	}
	now := time.Now()
	if now.Sub(u.swept) > time.Hour {
		for id, at := range u.batches {
			if now.Sub(at) > batchMemory {
				delete(u.batches, id)
			}
		}
		oldest := now.Add(-MinuteRetention).Unix()
		for _, acct := range u.counts {
			for k := range acct {
				if k.gran == keys.Minute && k.bucket < oldest {
					delete(acct, k)
				}
			}
		}
		u.swept = now
	}
	if _, ok := u.batches[b.ID]; ok {
		return nil
	}
	u.batches[b.ID] = now
	for _, r := range b.Rows {
		acct := u.counts[r.AccountID]
		if acct == nil {
			acct = make(map[usageKey]*keys.UsageCounts)
			u.counts[r.AccountID] = acct
		}
		// The key's buckets, and the account's totals (keyID ""), so an
		// account's usage reads its buckets and APIs, not its keys'.
		for _, keyID := range []string{r.KeyID, ""} {
			for _, g := range []keys.Granularity{keys.Minute, keys.Hour, keys.UTCDay} {
				k := usageKey{g, r.Bucket.UTC().Truncate(g.Duration()).Unix(), keyID, r.API}
				c, ok := acct[k]
				if !ok {
					c = &keys.UsageCounts{}
					acct[k] = c
				}
				c.Add(r.UsageCounts)
			}
		}
	}
	return nil
}

// Usage implements keys.UsageStore. It reads every bucket of the account.
func (s *Store) Usage(_ context.Context, q keys.UsageQuery) ([]keys.UsageRow, error) {
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	type bucketAPI struct {
		bucket int64
		api    string
	}
	sums := map[bucketAPI]*keys.UsageCounts{}
	from, to := q.From.Unix(), q.To.Unix()
	for k, c := range u.counts[q.AccountID] {
		if k.gran != q.Granularity || k.bucket < from || k.bucket >= to || k.keyID != q.KeyID || q.API != "" && k.api != q.API {
			continue
		}
		ba := bucketAPI{k.bucket, k.api}
		sum, ok := sums[ba]
		if !ok {
			sum = &keys.UsageCounts{}
			sums[ba] = sum
		}
		sum.Add(*c)
	}
	out := make([]keys.UsageRow, 0, len(sums))
	for ba, c := range sums {
		out = append(out, keys.UsageRow{Bucket: time.Unix(ba.bucket, 0).UTC(), AccountID: q.AccountID, API: ba.api, UsageCounts: *c})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Bucket.Equal(out[j].Bucket) {
			return out[i].Bucket.Before(out[j].Bucket)
		}
		return out[i].API < out[j].API
	})
	return out, nil
}
