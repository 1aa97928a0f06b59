package memstore

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

var _ store.LogStore = (*Store)(nil)

// LogWindow is how many request-log entries the store keeps per account:
// the newest, up to the retention. An account's flood pushes out only its
// own older entries, never another's; the memory it takes is about 250
// bytes an entry, 2.5 MB for a full window.
const LogWindow = 10_000

// logBook is the store's request log, behind a lock of its own.
type logBook struct {
	mu       sync.Mutex
	accounts map[string]*window   // by account
	perDay   map[accountDay]int   // entries added, by account and UTC day
	batches  map[string]time.Time // batch IDs added, for batchMemory
}

// window is an account's newest LogWindow entries at most, in a ring:
// next is where the next entry goes once it is full.
type window struct {
	es   []reqlog.Entry
	next int
}

func (w *window) add(e *reqlog.Entry) {
	if len(w.es) < LogWindow {
		w.es = append(w.es, *e)
		return
	}
	w.es[w.next] = *e
	w.next = (w.next + 1) % LogWindow
}

type accountDay struct {
	account string
	day     int64 // days since 1970
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// AddLogs implements store.LogStore.
func (s *Store) AddLogs(_ context.Context, b store.LogBatch) (int, error) {
	l := &s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.accounts == nil {
		l.accounts = make(map[string]*window)
		l.perDay = make(map[accountDay]int)
		l.batches = make(map[string]time.Time)
	}
	now := time.Now()
	if _, ok := l.batches[b.ID]; ok {
		return 0, nil
	}
	l.batches[b.ID] = now
	dropped := 0
	for i := range b.Entries {
		e := &b.Entries[i]
		k := accountDay{e.AccountID, dayOf(e.Timestamp)}
		if l.perDay[k] >= b.MaxPerDay {
			dropped++
			continue
		}
		l.perDay[k]++
		w := l.accounts[e.AccountID]
		if w == nil {
			w = &window{}
			l.accounts[e.AccountID] = w
		}
		w.add(e)
	}
	return dropped, nil
}

// Logs implements store.LogStore: it reads the account's window, at
// most LogWindow entries.
func (s *Store) Logs(_ context.Context, q store.LogQuery) ([]reqlog.Entry, error) {
	l := &s.logs
	l.mu.Lock()
	var out []reqlog.Entry
	if w := l.accounts[q.AccountID]; w != nil {
		for i := range w.es {
			if e := &w.es[i]; q.Matches(e) {
				out = append(out, *e)
			}
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b reqlog.Entry) int {
		if c := b.Timestamp.Compare(a.Timestamp); c != 0 {
			return c
		}
		switch {
		case a.RequestID > b.RequestID:
			return -1
		case a.RequestID < b.RequestID:
			return 1
		}
		return 0
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// PruneLogs implements store.LogStore.
func (s *Store) PruneLogs(_ context.Context, before time.Time) error {
	l := &s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, w := range l.accounts {
		// In the order added, oldest first, without the pruned.
		kept := slices.DeleteFunc(append(w.es[w.next:len(w.es):len(w.es)], w.es[:w.next]...), func(e reqlog.Entry) bool { return e.Timestamp.Before(before) })
		if len(kept) == 0 {
			delete(l.accounts, id)
		} else {
			l.accounts[id] = &window{es: kept, next: len(kept) % LogWindow}
		}
	}
	for k := range l.perDay {
		if k.day < dayOf(before)-1 {
			delete(l.perDay, k)
		}
	}
	for id, at := range l.batches {
		if time.Since(at) > batchMemory {
			delete(l.batches, id)
		}
	}
	return nil
}
