// Package reqid makes the library's request IDs, for both adapters.
package reqid

import "math/rand/v2"

// New is "req_" and 26 characters of base 32 (rand.Text's alphabet): 130
// random bits, in one allocation. The bits come from the runtime's
// ChaCha8 generator (math/rand/v2), seeded from the operating system: a
// request ID must be unique, not secret (it is shown in the response, and
// reading its entry needs its account's key), and crypto/rand costs a
// system call per request here (about 40% of the middleware).
func New() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var b [4 + 26]byte
	copy(b[:], "req_")
	x, y, z := rand.Uint64(), rand.Uint64(), rand.Uint64()
	for i := 4; i < len(b); i++ {
		b[i] = alphabet[x&31]
		x = x>>5 | y<<59
		y = y>>5 | z<<59
		z >>= 5
	}
	return string(b[:])
}
