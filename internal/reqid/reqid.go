// Package reqid makes the library's request IDs, for both adapters.
package reqid

import "crypto/rand"

// New is "req_" and 26 characters of base 32 (rand.Text's alphabet),
// each from 5 random bits: 130 bits, in one allocation.
func New() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var b [4 + 26]byte
	copy(b[:], "req_")
	_, _ = rand.Read(b[4:])
	for i := 4; i < len(b); i++ {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}
