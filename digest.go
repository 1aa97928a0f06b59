package keys

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/txcloud/keys/store"
)

// digestEqual compares two digests in constant time: four 64-bit XORs
// ORed together, no branch on the data (crypto/subtle's byte loop costs
// several times as much on the hot path).
func digestEqual(d, o *store.Digest) bool {
	le := binary.LittleEndian
	// Parenthesised: in Go, ^ and | share one precedence level.
	x := (le.Uint64(d[0:]) ^ le.Uint64(o[0:])) |
		(le.Uint64(d[8:]) ^ le.Uint64(o[8:])) |
		(le.Uint64(d[16:]) ^ le.Uint64(o[16:])) |
		(le.Uint64(d[24:]) ^ le.Uint64(o[24:]))
	return x == 0
}

// digester computes Digests. Without a pepper it is plain SHA-256; with one it
// is HMAC-SHA-256 written out over two sha256.Sum256 calls (RFC 2104 with a
// precomputed 64-byte key block), which allocates nothing, unlike
// crypto/hmac. TestHMACMatchesStdlib checks it against crypto/hmac.
type digester struct {
	peppered   bool
	ipad, opad [sha256.BlockSize]byte
}

func newDigester(pepper []byte) digester {
	if pepper == nil {
		return digester{}
	}
	h := digester{peppered: true}
	var k [sha256.BlockSize]byte
	if len(pepper) > sha256.BlockSize {
		s := sha256.Sum256(pepper)
		copy(k[:], s[:])
	} else {
		copy(k[:], pepper)
	}
	for i := range k {
		h.ipad[i] = k[i] ^ 0x36
		h.opad[i] = k[i] ^ 0x5c
	}
	return h
}

func (h *digester) sum(key []byte) store.Digest {
	if !h.peppered {
		return sha256.Sum256(key)
	}
	var buf [sha256.BlockSize + maxKeyLen]byte
	copy(buf[:], h.ipad[:])
	n := copy(buf[sha256.BlockSize:], key)
	inner := sha256.Sum256(buf[:sha256.BlockSize+n])
	copy(buf[:], h.opad[:])
	copy(buf[sha256.BlockSize:], inner[:])
	return sha256.Sum256(buf[:sha256.BlockSize+sha256.Size])
}

// Format prints a redacted placeholder: the pads are the pepper in disguise.
func (digester) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte("[digester redacted]")) }
