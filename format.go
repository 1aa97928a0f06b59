package keys

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Key format: <brand>_<env>_<random><checksum>, for example
//
//	txc_live_4Gq9…(32 random base62 characters)…Zb21x0 (6 checksum characters)
//
// The random part is 32 base62 characters drawn uniformly from crypto/rand
// (about 190 bits; 32 also makes it exactly four rounds of the 8-byte CRC
// loop). The checksum is the CRC-32 (IEEE) of everything before it,
// in 6 base62 digits, as GitHub's token format does: it lets Verify reject a
// mistyped or made-up key without hashing it or touching the store. It is not
// a MAC and adds no secrecy.
const (
	randomChars   = 32
	checksumChars = 6
	// displayChars is how many characters of the random part a key's Prefix
	// shows: 4 of 32 characters, about 24 of 190 bits, enough to tell keys
	// apart in a list and far too few to matter to an attacker.
	displayChars = 4
	// maxBrandLen bounds the brand so that a whole key fits the stack buffer
	// Verify hashes it in.
	maxBrandLen = 16
	maxKeyLen   = maxBrandLen + len("_live_") + randomChars + checksumChars
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Value maps a character to its digit value plus one; 0 marks a
// character outside the alphabet.
var base62Value = func() (t [256]uint8) {
	for i := 0; i < len(base62); i++ {
		t[base62[i]] = uint8(i) + 1
	}
	return t
}()

func isBase62(c byte) bool { return base62Value[c] != 0 }

// keyFormat holds the two full prefixes ("txc_live_", "txc_test_"). Both have
// the same length because "live" and "test" do, so every key of a Manager
// has one fixed length.
type keyFormat struct {
	brand            string // "txc_": every key of this format starts with it
	live, test       string
	liveCRC, testCRC uint32 // CRC-32 of each prefix, so parse sums only the rest
	length           int
}

func newKeyFormat(brand string) (keyFormat, error) {
	if brand == "" || len(brand) > maxBrandLen {
		return keyFormat{}, fmt.Errorf("keys: key prefix must be 1 to %d characters", maxBrandLen)
	}
	for i := 0; i < len(brand); i++ {
		c := brand[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return keyFormat{}, fmt.Errorf("keys: key prefix must be lowercase letters and digits")
		}
	}
	f := keyFormat{brand: brand + "_", live: brand + "_live_", test: brand + "_test_"}
	f.liveCRC, _ = crcUpdate(0, f.live)
	f.testCRC, _ = crcUpdate(0, f.test)
	f.length = len(f.live) + randomChars + checksumChars
	return f, nil
}

func (f keyFormat) prefixFor(env Environment) string {
	if env == Live {
		return f.live
	}
	return f.test
}

// generate returns a new key for env and a key ID, from one read of
// crypto/rand (whose cost grows with every byte read, so the draw is as
// small as it can be). The random part uses rejection sampling so every
// base62 character is equally likely. The ID is a UUIDv7: time-ordered, so
// that listing newest first can page by ID.
func (f keyFormat) generate(env Environment, now time.Time) (Secret, string, error) {
	// 10 random bytes of UUID, then 36 candidates for 32 characters: each
	// candidate is kept with probability 248/256, so more than 4 rejects
	// (under 1% of keys) means a second, small read.
	var pool [10 + randomChars + 4]byte
	if _, err := rand.Read(pool[:]); err != nil {
		return "", "", fmt.Errorf("keys: reading randomness: %w", err)
	}
	id := uuidV7(idPrefix, now, pool[:10])

	var out [maxKeyLen]byte
	p := f.prefixFor(env)
	n := copy(out[:], p)
	candidates := pool[10:]
	for n < len(p)+randomChars {
		if len(candidates) == 0 {
			candidates = pool[10 : 10+8]
			if _, err := rand.Read(candidates); err != nil {
				return "", "", fmt.Errorf("keys: reading randomness: %w", err)
			}
		}
		b := candidates[0]
		candidates = candidates[1:]
		if b >= 248 { // 248 = 4*62: larger bytes would bias the modulo
			continue
		}
		out[n] = base62[b%62]
		n++
	}
	sum, _ := crcUpdate(0, out[:n])
	key := appendChecksum(out[:n], sum)
	clear(pool[:])
	return Secret(key), id, nil
}

// uuidV7 formats prefix ("key_", "evt_") and a version 7 UUID (RFC 9562:
// 48 bits of Unix milliseconds, then random bits) in one allocation.
func uuidV7(prefix string, now time.Time, random []byte) string {
	var u uuid.UUID
	ms := uint64(now.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], random)
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	const hexDigits = "0123456789abcdef"
	var b [4 + 36]byte
	n := copy(b[:], prefix)
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[n] = '-'
			n++
		}
		b[n], b[n+1] = hexDigits[x>>4], hexDigits[x&0x0f]
		n += 2
	}
	return string(b[:n])
}

// idPrefix marks key IDs, so an ID in a log is recognisable as one.
const idPrefix = "key_"

// newEventID is an event's ID: "evt_" and a version 7 UUID whose 12 bits
// after the milliseconds hold the microseconds within it (RFC 9562's
// method 3), so that IDs sort by time to the microsecond, as the log does.
func newEventID(now time.Time) string {
	var random [10]byte
	_, _ = rand.Read(random[:]) // crypto/rand.Read does not fail
	us := uint16(now.Nanosecond() / 1000 % 1000)
	random[0], random[1] = byte(us>>8), byte(us)
	return uuidV7("evt_", now, random[:])
}

// appendChecksum appends c as exactly checksumChars base62 digits
// (62^6 > 2^32, so every CRC-32 fits).
func appendChecksum(dst []byte, c uint32) []byte {
	var digits [checksumChars]byte
	for i := checksumChars - 1; i >= 0; i-- {
		digits[i] = base62[c%62]
		c /= 62
	}
	return append(dst, digits[:]...)
}

// parse checks key's shape and checksum and copies it into buf, so that the
// caller can hash it without converting the string (which would allocate).
// It never looks at a store. The comparisons are on public structure only
// (length, prefix, alphabet, checksum), so their timing reveals nothing
// about any stored key.
func (f keyFormat) parse(key string, buf *[maxKeyLen]byte) (Environment, bool) {
	if len(key) != f.length {
		return "", false
	}
	var env Environment
	var crc uint32
	switch key[:len(f.live)] {
	case f.live:
		env, crc = Live, f.liveCRC
	case f.test:
		env, crc = Test, f.testCRC
	default:
		return "", false
	}
	// Decode the presented checksum rather than encode the computed one:
	// the decoding does not wait for the CRC, so the two overlap. Each
	// lookup minus one is 255 for a byte outside the alphabet, so ORing
	// them sets the top bit if any is.
	c := key[len(key)-checksumChars:]
	d0, d1, d2 := base62Value[c[0]]-1, base62Value[c[1]]-1, base62Value[c[2]]-1
	d3, d4, d5 := base62Value[c[3]]-1, base62Value[c[4]]-1, base62Value[c[5]]-1
	hi := uint64(d0)*62*62 + uint64(d1)*62 + uint64(d2)
	lo := uint64(d3)*62*62 + uint64(d4)*62 + uint64(d5)
	bad := d0 | d1 | d2 | d3 | d4 | d5
	sum, bodyBad := crcUpdate(crc, key[len(f.live):len(key)-checksumChars])
	if (bad|bodyBad)&0x80 != 0 || hi*62*62*62+lo != uint64(sum) {
		return "", false
	}
	copy(buf[:], key)
	return env, true
}

// crcTables are the eight tables of slicing-by-8 CRC-32 (IEEE), the
// algorithm hash/crc32 uses for short inputs. hash/crc32's own entry points
// take a []byte through a function value, which makes escape analysis move
// Verify's key buffer to the heap, so the loop is written out here, over a
// string. TestChecksumMatchesStdlib holds it to crc32.ChecksumIEEE.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.MakeTable(crc32.IEEE)
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = t[0][c&0xFF] ^ (c >> 8)
			t[k][i] = c
		}
	}
	return t
}()

// crcUpdate continues a CRC-32 (IEEE) over s (start from 0). Riding on the
// same loads, it also ORs together base62Value[b]-1 for every byte b, whose
// top bit is set if any byte of s is outside the base62 alphabet.
func crcUpdate[T string | []byte](crc uint32, s T) (sum uint32, bad uint8) {
	c := ^crc
	for len(s) >= 8 {
		b0, b1, b2, b3, b4, b5, b6, b7 := s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
		bad |= (base62Value[b0] - 1) | (base62Value[b1] - 1) | (base62Value[b2] - 1) | (base62Value[b3] - 1) |
			(base62Value[b4] - 1) | (base62Value[b5] - 1) | (base62Value[b6] - 1) | (base62Value[b7] - 1)
		c ^= uint32(b0) | uint32(b1)<<8 | uint32(b2)<<16 | uint32(b3)<<24
		c = crcTables[0][b7] ^ crcTables[1][b6] ^ crcTables[2][b5] ^ crcTables[3][b4] ^
			crcTables[4][c>>24] ^ crcTables[5][(c>>16)&0xFF] ^ crcTables[6][(c>>8)&0xFF] ^ crcTables[7][c&0xFF]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		bad |= base62Value[s[i]] - 1
		c = crcTables[0][byte(c)^s[i]] ^ (c >> 8)
	}
	return ^c, bad
}

// displayPrefix is the non-secret beginning of a key shown in responses. It
// is a copy: a substring would share the secret's memory, and keep the whole
// plaintext key alive for as long as the record that holds the prefix.
func (f keyFormat) displayPrefix(key Secret) string {
	return strings.Clone(string(key[:len(f.live)+displayChars]))
}
