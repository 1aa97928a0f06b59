package keys

import "github.com/txcloud/keys/reqlog"

// WithValidChecksum replaces key's checksum with the right one, to make
// well-formed keys that were never issued. The checksum is public by
// design: anyone can do this, which is why a valid checksum proves nothing
// beyond "not a typo".
func WithValidChecksum(key string) string {
	body := key[:len(key)-checksumChars]
	sum, _ := crcUpdate(0, body)
	return string(appendChecksum([]byte(body), sum))
}

// EndpointMatches reports whether a plan's endpoint pattern matches a
// request's method and path.
func EndpointMatches(pattern, method, path string) bool {
	ep, err := parseEndpointPattern(pattern)
	return err == nil && ep.match(method, path)
}

// UsageDropped is how many requests m's meter could not count (past its
// memory bounds).
func UsageDropped(m *Manager) int64 { return m.meter.dropped.Load() }

// SetUsageBatches lowers m's bounds on the rows held for a failing store
// (pending) and on the rows of one batch.
func SetUsageBatches(m *Manager, pending, batch int) {
	m.meter.maxPending, m.meter.batchRows = pending, batch
}

// SetExtraCells lowers m's bound on the cells of further APIs.
func SetExtraCells(m *Manager, n int64) { m.states.maxExtra = n }

// OutcomeOf is Verify's outcome for err.
var OutcomeOf = outcomeOf

// States is how many keys m keeps a state for.
func States(m *Manager) int {
	n := 0
	m.states.each(func(*keyState) { n++ })
	return n
}

// MaxAPIsPerKey is the meter's bound on one key's APIs.
const MaxAPIsPerKey = maxAPIsPerKey

// GenerateForBench returns a new key of m's format, unstored.
func GenerateForBench(m *Manager) (string, error) {
	s, _, err := m.format.generate(Live, m.now())
	return string(s), err
}

// DiscardLogs drains the request-log ring the calling P writes and
// throws its entries away: the flusher's in-memory work for that ring,
// without a store.
func DiscardLogs(m *Manager, buf []reqlog.Entry) []reqlog.Entry {
	l := m.rlog
	r := l.hint.Get().(*logRing)
	buf = r.drain(l, buf[:0])
	l.hint.Put(r)
	clear(buf)
	return buf
}
