package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

var _ store.UsageStore = (*Store)(nil)

// usageCounts is the store's usage counts, behind a lock of their own (a
// flush never holds up a key's lookup or write).
type usageCounts struct {
	mu      sync.Mutex
	counts  map[string]map[usageKey]*counts // by account
	batches map[string]time.Time            // batch IDs added, for 7 days
	swept   time.Time
}

type usageKey struct {
	gran       usage.Granularity
	bucket     int64 // Unix seconds
	keyID, api string
}

// counts are one bucket's: Failed includes RateLimited.
type counts struct{ successful, failed, rateLimited int64 }

func (c *counts) add(r *store.UsageRow) {
	c.successful += r.Successful
	c.failed += r.Failed
	c.rateLimited += r.RateLimited
}

// batchMemory is how long an added batch's ID is remembered.
const batchMemory = 7 * 24 * time.Hour

// AddUsage implements store.UsageStore. Minute buckets are kept for
// store.MinuteRetention; hours and days for good.
func (s *Store) AddUsage(_ context.Context, b store.UsageBatch) error {
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.counts == nil {
		u.counts = make(map[string]map[usageKey]*counts)
		u.batches = make(map[string]time.Time)
	}
	now := time.Now()
	if now.Sub(u.swept) > time.Hour {
		for id, at := range u.batches {
			if now.Sub(at) > batchMemory {
				delete(u.batches, id)
			}
		}
		oldest := now.Add(-store.MinuteRetention).Unix()
		for _, acct := range u.counts {
			for k := range acct {
				if k.gran == usage.Minute && k.bucket < oldest {
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
	for i := range b.Rows {
		r := &b.Rows[i]
		acct := u.counts[r.AccountID]
		if acct == nil {
			acct = make(map[usageKey]*counts)
			u.counts[r.AccountID] = acct
		}
		// The key's buckets, and the account's totals (keyID ""), so an
		// account's usage reads its buckets and APIs, not its keys'.
		for _, keyID := range []string{r.KeyID, ""} {
			for _, g := range []usage.Granularity{usage.Minute, usage.Hour, usage.Day} {
				k := usageKey{g, r.Bucket.UTC().Truncate(g.Duration()).Unix(), keyID, r.API}
				c, ok := acct[k]
				if !ok {
					c = &counts{}
					acct[k] = c
				}
				c.add(r)
			}
		}
	}
	return nil
}

// Usage implements store.UsageStore. It reads every bucket of the account.
func (s *Store) Usage(_ context.Context, q store.UsageQuery) ([]store.UsageRow, error) {
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	type bucketAPI struct {
		bucket int64
		api    string
	}
	sums := map[bucketAPI]*store.UsageRow{}
	from, to := q.From.Unix(), q.To.Unix()
	for k, c := range u.counts[q.AccountID] {
		if k.gran != q.Granularity || k.bucket < from || k.bucket >= to || k.keyID != q.KeyID || q.API != "" && k.api != q.API {
			continue
		}
		ba := bucketAPI{k.bucket, k.api}
		sum, ok := sums[ba]
		if !ok {
			sum = &store.UsageRow{Bucket: time.Unix(ba.bucket, 0).UTC(), AccountID: q.AccountID, API: ba.api}
			sums[ba] = sum
		}
		sum.Successful += c.successful
		sum.Failed += c.failed
		sum.RateLimited += c.rateLimited
	}
	out := make([]store.UsageRow, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Bucket.Equal(out[j].Bucket) {
			return out[i].Bucket.Before(out[j].Bucket)
		}
		return out[i].API < out[j].API
	})
	return out, nil
}
