package connlimit

import "net/netip"

// OpenFrom is how many connections of addr the Listener holds (for tests).
func (l *Listener) OpenFrom(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.byAddr[addr]; a != nil {
		return a.open
	}
	return 0
}
