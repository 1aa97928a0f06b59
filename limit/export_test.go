package limit

// Entries counts the keys and accounts an in-memory limiter holds state
// for.
func Entries(l Limiter) int {
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
