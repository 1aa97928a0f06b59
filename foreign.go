package keys

import (
	"crypto/sha256"
	"strings"

	"github.com/txcloud/keys/store"
)

// Foreign keys are keys another system issued, imported (Manager.Import)
// so that clients keep using them. They are recognised by a prefix the
// host configures (WithForeignPrefixes) and skip the checksum step, which
// they cannot pass; a key that starts with this Manager's own prefix
// (txc_) never takes this path, so a malformed txc_ key is still refused
// before any hashing.
//
// A foreign key is stored under the plain SHA-256 of the key, even when
// the Manager has a pepper: an import by digest cannot be peppered (the
// key is never seen), and one rule for every foreign key keeps Verify at
// one lookup.

const (
	// maxForeignKeyLen bounds a foreign key, so that its digest is taken
	// from a stack buffer.
	maxForeignKeyLen = 256
	// minForeignSecret is the fewest characters a foreign key must carry
	// after its prefix.
	minForeignSecret = 16
)

// validForeignPrefix: 2 to 32 letters, digits, '_' and '-'.
func validForeignPrefix(p string) bool {
	if len(p) < 2 || len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(isBase62(c) || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// foreignPrefix returns the configured prefix key starts with, if any.
func (m *Manager) foreignPrefix(key string) (string, bool) {
	for _, p := range m.foreign {
		if strings.HasPrefix(key, p) {
			return p, true
		}
	}
	return "", false
}

// foreignDigest is the digest of a foreign key: one with a configured
// prefix, at least minForeignSecret more characters, at most
// maxForeignKeyLen in all, of printable ASCII without spaces.
func (m *Manager) foreignDigest(key string) (store.Digest, bool) {
	if len(m.foreign) == 0 || strings.HasPrefix(key, m.format.brand) {
		return store.Digest{}, false // a malformed key of ours: refused before any hashing
	}
	p, ok := m.foreignPrefix(key)
	if !ok || len(key) < len(p)+minForeignSecret || len(key) > maxForeignKeyLen {
		return store.Digest{}, false
	}
	var buf [maxForeignKeyLen]byte
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c > '~' {
			return store.Digest{}, false
		}
		buf[i] = c
	}
	d := sha256.Sum256(buf[:len(key)])
	clear(buf[:len(key)])
	return d, true
}

// presentedDigest is the digest a presented key is stored under: this
// Manager's own format (checksum first), or a foreign key's.
func (m *Manager) presentedDigest(key string) (store.Digest, bool) {
	var buf [maxKeyLen]byte
	if _, ok := m.format.parse(key, &buf); ok {
		return m.digest.sum(buf[:len(key)]), true
	}
	return m.foreignDigest(key)
}
