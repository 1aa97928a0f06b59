package keys

// WithValidChecksum replaces key's checksum with the right one, to make
// well-formed keys that were never issued. The checksum is public by
// design: anyone can do this, which is why a valid checksum proves nothing
// beyond "not a typo".
func WithValidChecksum(key string) string {
	body := key[:len(key)-checksumChars]
	sum, _ := crcUpdate(0, body)
	return string(appendChecksum([]byte(body), sum))
}

// LimiterEntries counts the keys an in-memory limiter holds state for.
func LimiterEntries(l Limiter) int {
	m := l.(*memoryLimiter)
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.keys) + len(s.accounts)
		s.mu.Unlock()
	}
	return n
}

// EndpointMatches reports whether a plan's endpoint pattern matches a
// request's method and path.
func EndpointMatches(pattern, method, path string) bool {
	ep, err := parseEndpointPattern(pattern)
	return err == nil && ep.match(method, path)
}

// SetMeterCells lowers m's bound on (key, API) pairs counted at once.
func SetMeterCells(m *Manager, n int) {
	m.meter.mu.Lock()
	m.meter.maxCells = n
	m.meter.mu.Unlock()
}

// MaxAPIsPerKey is the meter's bound on one key's APIs.
const MaxAPIsPerKey = maxAPIsPerKey

// GenerateForBench returns a new key of m's format, unstored.
func GenerateForBench(m *Manager) (string, error) {
	s, _, err := m.format.generate(Live, m.now())
	return string(s), err
}
