// Package clientip works out which address a request comes from behind
// trusted proxies, the one rule httpadapter and grpcadapter share.
package clientip

import (
	"net/netip"
	"strings"
)

// Resolve is the client's address: peer, unless peer is a trusted proxy,
// in which case chain (the forwarding entries in the order sent) is walked
// from the right (the entries a trusted proxy appended) to the first
// address that is not a trusted proxy. Entries left of that are the
// client's own claims and are never read. An unparsable entry reached on
// the walk gives no address at all, so an allowlist then fails closed.
// chain is called only when peer is trusted.
func Resolve(peer netip.Addr, trusted []netip.Prefix, chain func() []string) netip.Addr {
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	entries := chain()
	addr := peer
	for i := len(entries) - 1; i >= 0; i-- {
		a := ParseHostPort(entries[i])
		if !a.IsValid() {
			return netip.Addr{}
		}
		addr = a
		if !isTrusted(a, trusted) {
			break
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// List splits comma-separated values (as X-Forwarded-For carries them)
// into trimmed entries, in order.
func List(values []string) []string {
	var out []string
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			out = append(out, strings.TrimSpace(part))
		}
	}
	return out
}

// ParseHostPort accepts "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" and
// "[::1]", and returns the address unmapped and without a zone.
func ParseHostPort(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}
